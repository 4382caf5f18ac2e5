//! Every timing knob of the emulator, in one place: the emulator's defaults,
//! overridden by a database, overridden by an action.

use std::time::Duration;

use serde::Deserialize;

/// Every timing knob of the emulator, in one place.
#[derive(Clone, Debug)]
pub struct Timings {
    /// MOVING grace (time_s) unless a database or action says otherwise.
    pub moving_grace: Duration,
    /// How long a start notification precedes the disruption.
    pub notice_lead: Duration,
    /// Seconds a MIGRATING / FAILING_OVER window announces beyond the lead.
    pub window_estimate: Duration,
    /// Longest wait for in-flight commands before a switch-over.
    pub drain_timeout: Duration,
    /// Longest wait for a replica to sync or catch up.
    pub sync_timeout: Duration,
    /// How long after the switch-over the cluster announces the completion
    /// (MIGRATED / FAILED_OVER): on a real cluster a failover or the final
    /// switch of a migration takes seconds, not the instant a local switch takes.
    pub settle: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            moving_grace: Duration::from_secs(15),
            notice_lead: Duration::from_secs(1),
            window_estimate: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(5),
            sync_timeout: Duration::from_secs(30),
            settle: Duration::from_secs(3),
        }
    }
}

impl Timings {
    /// These timings with `o` applied on top.
    pub fn with(&self, o: &TimingOverrides) -> Timings {
        let secs = |v: Option<f64>, d: Duration| v.map(Duration::from_secs_f64).unwrap_or(d);
        Timings {
            moving_grace: secs(o.grace_s, self.moving_grace),
            notice_lead: secs(o.lead_s, self.notice_lead),
            window_estimate: secs(o.window_s, self.window_estimate),
            settle: secs(o.settle_s, self.settle),
            ..self.clone()
        }
    }

    /// Short timings for fast acceptance scenarios.
    pub fn fast(grace: Duration) -> Self {
        Timings {
            moving_grace: grace,
            notice_lead: Duration::from_millis(300),
            window_estimate: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(3),
            sync_timeout: Duration::from_secs(10),
            settle: Duration::ZERO,
        }
    }
}

/// Timing a database or a single action may set, in seconds, over the
/// emulator's [`Timings`]: an action's value wins over its database's, which wins
/// over the emulator's.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
pub struct TimingOverrides {
    /// MOVING grace (time_s of MOVING; the old endpoint closes after it).
    #[serde(default)]
    pub grace_s: Option<f64>,
    /// How long a start notification precedes the disruption.
    #[serde(default)]
    pub lead_s: Option<f64>,
    /// How long a MIGRATING / FAILING_OVER window announces beyond the lead.
    #[serde(default)]
    pub window_s: Option<f64>,
    /// How long after the switch-over the completion is sent.
    #[serde(default)]
    pub settle_s: Option<f64>,
}

impl TimingOverrides {
    /// Checks that every value is a number of seconds between 0 and 3600.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("grace_s", self.grace_s),
            ("lead_s", self.lead_s),
            ("window_s", self.window_s),
            ("settle_s", self.settle_s),
        ] {
            if let Some(v) = v {
                if !(0.0..=3600.0).contains(&v) {
                    return Err(format!(
                        "{name} must be a number of seconds between 0 and 3600, got {v}"
                    ));
                }
            }
        }
        Ok(())
    }
}
