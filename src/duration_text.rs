//! Durations written the one way the features write them (`500 ms`,
//! `3 s`, `2 min`, `unbounded`): shared by the client's description of its
//! settings, the suite's claims and the reports, below all of them.

use std::time::Duration;

/// A timeout as steps write it: `500 ms`, `3 s`, `2.5 s`, `2 min`, or
/// `unbounded` (the form `steps::params::parse_duration` reads).
pub fn show(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "unbounded".into();
    };
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1000.0 {
        format!("{} ms", trim_number(ms))
    } else if ms >= 120_000.0 && ms % 60_000.0 == 0.0 {
        format!("{} min", trim_number(ms / 60_000.0))
    } else {
        format!("{} s", trim_number(ms / 1e3))
    }
}

/// `2.5`, `3`, `0.125`: at most three decimals, no trailing zeros.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_features_write_them() {
        assert_eq!(show(None), "unbounded");
        assert_eq!(show(Some(Duration::from_millis(500))), "500 ms");
        assert_eq!(show(Some(Duration::from_millis(2500))), "2.5 s");
        assert_eq!(show(Some(Duration::from_secs(120))), "2 min");
        assert_eq!(show(Some(Duration::from_secs(90))), "90 s");
    }
}
