//! A driver's events, as the suite's timeline holds them: each one an
//! [`EventKind::Observed`] of its client, at the instant of this process
//! its clock reading maps to, on a connection id of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::client::{ClientEvent, EventKind, EventSink};

/// Connection ids of drivers' clients start here, clear of the in-process
/// client's.
const FIRST_DRIVER_CONN: u64 = 1 << 40;

static NEXT_CONN: AtomicU64 = AtomicU64::new(FIRST_DRIVER_CONN);

/// Turns a driver's event lines into timeline events.
pub struct Observations {
    sink: Arc<dyn EventSink>,
    /// An instant of this process and the driver's clock reading then.
    clock: Mutex<Option<(Instant, f64)>>,
    /// The driver's connection ids, and the ids they have here.
    conns: Mutex<HashMap<String, u64>>,
}

impl Observations {
    /// Events go to `sink`.
    pub fn new(sink: Arc<dyn EventSink>) -> Observations {
        Observations {
            sink,
            clock: Mutex::new(None),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// The driver's clock read `driver` at `here`.
    pub fn set_clock(&self, here: Instant, driver: f64) {
        *self.clock.lock().unwrap() = Some((here, driver));
    }

    /// The instant of this process the driver's clock reading `t` was (now,
    /// before the clocks are aligned).
    pub fn instant(&self, t: f64) -> Instant {
        let Some((here, driver)) = *self.clock.lock().unwrap() else {
            return Instant::now();
        };
        let d = Duration::from_secs_f64((t - driver).abs());
        if t >= driver {
            here + d
        } else {
            here.checked_sub(d).unwrap_or(here)
        }
    }

    /// Records one event line (`{"event": ..., "client": ..., "at": ...}`).
    pub fn event(&self, message: &Map<String, Value>) {
        let (Some(what), Some(client)) = (
            message.get("event").and_then(Value::as_str),
            message.get("client").and_then(Value::as_str),
        ) else {
            return;
        };
        let at = message
            .get("at")
            .and_then(Value::as_f64)
            .map_or_else(Instant::now, |t| self.instant(t));
        let conn = match message.get("connection") {
            Some(Value::Null) | None => 0,
            Some(id) => *self
                .conns
                .lock()
                .unwrap()
                .entry(id.to_string())
                .or_insert_with(|| NEXT_CONN.fetch_add(1, Ordering::Relaxed)),
        };
        self.sink.record(ClientEvent {
            at,
            client: client.to_string(),
            conn,
            kind: EventKind::Observed {
                what: describe(what, message),
            },
        });
    }
}

/// `relaxed on MIGRATING 12 (maintenance)`: the event, its notification and
/// state, as the driver gave them.
fn describe(what: &str, message: &Map<String, Value>) -> String {
    let mut out = what.to_string();
    if let Some(n) = message.get("notification").and_then(Value::as_object) {
        let kind = n.get("kind").and_then(Value::as_str).unwrap_or("?");
        out += &format!(" on {kind}");
        if let Some(seq) = n.get("seq").filter(|s| !s.is_null()) {
            out += &format!(" {seq}");
        }
    }
    if let Some(state) = message.get("state").and_then(Value::as_str) {
        out += &format!(" ({state})");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Default)]
    struct Kept(Mutex<Vec<ClientEvent>>);
    impl EventSink for Kept {
        fn record(&self, e: ClientEvent) {
            self.0.lock().unwrap().push(e);
        }
    }

    #[test]
    fn driver_events_land_at_their_instant_on_connection_ids_of_their_own() {
        let kept = Arc::new(Kept::default());
        let o = Observations::new(kept.clone());
        let here = Instant::now();
        o.set_clock(here, 100.0);
        let line = |v: Value| v.as_object().unwrap().clone();
        o.event(&line(
            json!({"event": "relaxed", "client": "app", "at": 100.25,
            "connection": 77, "state": "maintenance",
            "notification": {"kind": "MIGRATING", "seq": 12}}),
        ));
        o.event(&line(
            json!({"event": "unrelaxed", "client": "app", "at": 99.5,
            "connection": 77}),
        ));
        o.event(&line(
            json!({"event": "relaxed", "client": "app", "at": 101.0,
            "connection": 78}),
        ));
        // No client: not an event of any client under test.
        o.event(&line(json!({"event": "bye", "at": 102.0})));
        let e = kept.0.lock().unwrap().clone();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].at - here, Duration::from_millis(250));
        assert_eq!(here - e[1].at, Duration::from_millis(500));
        assert_eq!(
            e[0].kind,
            EventKind::Observed {
                what: "relaxed on MIGRATING 12 (maintenance)".into()
            }
        );
        assert_eq!(e[0].conn, e[1].conn);
        assert_ne!(e[0].conn, e[2].conn);
        assert!(e[0].conn >= FIRST_DRIVER_CONN);
    }
}
