//! Every timing knob of the emulator's maintenance, in one place: the
//! emulator's defaults, overridden by a database, overridden by an action
//! ([`TimingOverrides`]).

use std::time::Duration;

use crate::fault_injector::TimingOverrides;

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
    /// How long each switch-over of a failover or migration holds the
    /// database's traffic: a real one takes seconds, so that a client which
    /// does not relax its timeouts sees them expire.
    pub hold: Duration,
    /// How long a node that left an OSS Cluster API database keeps its
    /// proxy up, redirecting: clients' pools may hold idle connections to it
    /// well after SMIGRATED (redis-py's cluster suite reads every pooled
    /// connection at the end of a test a minute long).
    pub node_linger: Duration,
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
            hold: Duration::from_secs(1),
            node_linger: Duration::from_secs(120),
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
            hold: secs(o.hold_s, self.hold),
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
            // Longer than the suite's response timeout (1 s), shorter than its
            // relaxed timeout (3 s): only a client that relaxed gets through.
            hold: Duration::from_millis(1500),
            node_linger: grace * 2,
        }
    }
}
