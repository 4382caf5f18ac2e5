//! The relaxation state machine of one connection: which maintenance windows
//! are open (each until its completion or its backstop), the tail after the
//! last one closed, and whether the connection is relaxed now. Pure: it
//! reads no clock of its own (every call is given `now`) and emits nothing;
//! the connection wires it to timers and events.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::notification::Kind;

/// One window a connection keeps open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WindowKey {
    /// MIGRATING / FAILING_OVER / SMIGRATING (the kind) with this seq.
    Event(Kind, i64),
    /// The handoff for MOVING with this seq.
    Handoff(i64),
}

/// Where a connection's relaxation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relaxation {
    /// Not relaxed: the configured timeout applies.
    Off,
    /// Windows are open; the last of their backstops.
    Windows {
        /// When the last window closes at the latest.
        backstop: Instant,
    },
    /// Every window closed; only the tail is left.
    Tail {
        /// When it ends.
        until: Instant,
    },
}

/// The open windows of a connection and the tail after them.
#[derive(Default)]
pub(crate) struct Relax {
    /// Open windows and their backstops.
    windows: HashMap<WindowKey, Instant>,
    /// When each window opened (kept for windows that are open).
    opened: HashMap<WindowKey, Instant>,
    tail_until: Option<Instant>,
    /// Relaxed as last reported.
    relaxed: bool,
}

impl Relax {
    /// Relaxed at `now`: a window is open (its backstop not passed) or the
    /// tail runs. Forgets windows whose backstop passed.
    pub(crate) fn active(&mut self, now: Instant) -> bool {
        self.windows.retain(|_, backstop| *backstop > now);
        let open = &self.windows;
        self.opened.retain(|k, _| open.contains_key(k));
        !self.windows.is_empty() || self.tail_until.is_some_and(|t| t > now)
    }

    /// Where it stands at `now`.
    pub(crate) fn relaxation(&mut self, now: Instant) -> Relaxation {
        if !self.active(now) {
            return Relaxation::Off;
        }
        match self.windows.values().max() {
            Some(b) => Relaxation::Windows { backstop: *b },
            None => Relaxation::Tail {
                until: self.tail_until.unwrap_or(now),
            },
        }
    }

    /// Opens `key` until `backstop` at the latest (a window already open
    /// keeps its own).
    pub(crate) fn open(&mut self, key: WindowKey, backstop: Instant, now: Instant) {
        self.windows.entry(key).or_insert(backstop);
        self.opened.entry(key).or_insert(now);
    }

    /// Closes `key`, the tail running until `tail` (or a later tail already
    /// running); false when it was not open.
    pub(crate) fn close(&mut self, key: WindowKey, tail: Instant) -> bool {
        let removed = self.windows.remove(&key).is_some();
        self.opened.remove(&key);
        if removed {
            self.tail_until = Some(self.tail_until.map_or(tail, |t| t.max(tail)));
        }
        removed
    }

    /// The open window a completion of `start`'s kind with `seq` closes:
    /// its own (start seq + 1, as servers number them), or else the oldest
    /// open window of its kind.
    pub(crate) fn matching(&self, start: Kind, seq: i64) -> Option<WindowKey> {
        let own = WindowKey::Event(start, seq - 1);
        if self.windows.contains_key(&own) {
            return Some(own);
        }
        self.windows
            .iter()
            .filter(|(k, _)| matches!(k, WindowKey::Event(kind, _) if *kind == start))
            .min_by_key(|(k, backstop)| (self.opened.get(*k).copied(), **backstop))
            .map(|(k, _)| *k)
    }

    /// `Some(relaxed)` when being relaxed at `now` differs from what was
    /// last reported (and is now reported), `None` when it does not.
    pub(crate) fn changed(&mut self, now: Instant) -> Option<bool> {
        let now_relaxed = self.active(now);
        let changed = now_relaxed != self.relaxed;
        self.relaxed = now_relaxed;
        changed.then_some(now_relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_window_relaxes_until_its_completion_then_the_tail_runs_out() {
        let t0 = Instant::now();
        let mut r = Relax::default();
        assert_eq!(r.relaxation(t0), Relaxation::Off);
        assert_eq!(r.changed(t0), None);
        let key = WindowKey::Event(Kind::Migrating, 1);
        r.open(key, at(t0, 10_000), t0);
        assert_eq!(
            r.relaxation(at(t0, 1)),
            Relaxation::Windows {
                backstop: at(t0, 10_000)
            }
        );
        assert_eq!(r.changed(at(t0, 1)), Some(true));
        assert_eq!(r.changed(at(t0, 2)), None, "reported once");
        assert!(r.close(key, at(t0, 600)));
        assert!(!r.close(key, at(t0, 900)), "closed once");
        assert_eq!(
            r.relaxation(at(t0, 500)),
            Relaxation::Tail { until: at(t0, 600) }
        );
        assert_eq!(r.changed(at(t0, 500)), None, "still relaxed in the tail");
        assert_eq!(r.relaxation(at(t0, 600)), Relaxation::Off);
        assert_eq!(r.changed(at(t0, 600)), Some(false));
    }

    #[test]
    fn a_window_without_completion_closes_at_its_backstop() {
        let t0 = Instant::now();
        let mut r = Relax::default();
        r.open(WindowKey::Event(Kind::FailingOver, 1), at(t0, 3_000), t0);
        // Opened again: the first backstop stands.
        r.open(WindowKey::Event(Kind::FailingOver, 1), at(t0, 9_000), t0);
        assert!(r.active(at(t0, 2_999)));
        assert!(!r.active(at(t0, 3_000)));
        assert_eq!(r.matching(Kind::FailingOver, 2), None, "forgotten");
    }

    #[test]
    fn nested_windows_stay_relaxed_until_the_last_and_a_later_tail_wins() {
        let t0 = Instant::now();
        let mut r = Relax::default();
        let (m, f) = (
            WindowKey::Event(Kind::Migrating, 101),
            WindowKey::Event(Kind::FailingOver, 201),
        );
        r.open(m, at(t0, 20_000), t0);
        r.open(f, at(t0, 20_000), at(t0, 10));
        assert!(r.close(m, at(t0, 300)));
        assert!(r.active(at(t0, 5_000)), "FAILING_OVER is still open");
        assert!(r.close(f, at(t0, 5_200)));
        assert!(r.active(at(t0, 5_100)));
        assert!(!r.active(at(t0, 5_200)));
        // A shorter tail does not cut a longer one short.
        r.open(m, at(t0, 20_000), at(t0, 6_000));
        r.close(m, at(t0, 9_000));
        r.open(f, at(t0, 20_000), at(t0, 6_100));
        r.close(f, at(t0, 7_000));
        assert!(r.active(at(t0, 8_000)));
    }

    #[test]
    fn a_completion_closes_its_own_window_or_else_the_oldest_of_its_kind() {
        let t0 = Instant::now();
        let mut r = Relax::default();
        r.open(
            WindowKey::Event(Kind::Migrating, 7),
            at(t0, 9_000),
            at(t0, 2),
        );
        r.open(
            WindowKey::Event(Kind::Migrating, 3),
            at(t0, 9_000),
            at(t0, 1),
        );
        r.open(WindowKey::Handoff(5), at(t0, 9_000), t0);
        assert_eq!(
            r.matching(Kind::Migrating, 8),
            Some(WindowKey::Event(Kind::Migrating, 7))
        );
        assert_eq!(
            r.matching(Kind::Migrating, 305),
            Some(WindowKey::Event(Kind::Migrating, 3)),
            "numbered otherwise: the oldest open MIGRATING"
        );
        assert_eq!(r.matching(Kind::FailingOver, 6), None);
    }
}
