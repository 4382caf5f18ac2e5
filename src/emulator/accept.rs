//! What a listener does when `accept` fails (out of file descriptors, most
//! often, when a client opens connections without end): it waits a moment
//! before trying again, rather than spinning, and says so at most once a
//! second, with how many failures the line stands for.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use crate::timing::ACCEPT_RETRY;

/// How often a listener that keeps failing to accept may say so.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The failed accepts of one listener.
#[derive(Debug)]
pub struct AcceptErrors {
    /// What listens, for the log line ("the fault injector API").
    what: String,
    /// Failures since the last line.
    unlogged: u64,
    /// When the last line was written.
    logged_at: Option<Instant>,
}

impl AcceptErrors {
    pub fn new(what: impl Into<String>) -> Self {
        AcceptErrors {
            what: what.into(),
            unlogged: 0,
            logged_at: None,
        }
    }

    /// Counts one failure at `now`; the line to log when one is due (the
    /// first failure, then at most one a second, covering all since).
    pub fn note(&mut self, e: &io::Error, now: Instant) -> Option<String> {
        self.unlogged += 1;
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return None;
        }
        let n = std::mem::take(&mut self.unlogged);
        self.logged_at = Some(now);
        let retry = ACCEPT_RETRY.as_millis();
        Some(match n {
            1 => format!(
                "{} could not accept a connection: {e} (retrying every {retry} ms)",
                self.what
            ),
            n => format!(
                "{} could not accept a connection {n} times in the last second: {e} (retrying every {retry} ms)",
                self.what
            ),
        })
    }

    /// Logs `e` when a line is due, then waits before the next accept.
    pub async fn failed(&mut self, e: io::Error) {
        if let Some(line) = self.note(&e, Instant::now()) {
            tracing::warn!("{line}");
        }
        tokio::time::sleep(ACCEPT_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(24)
    }

    #[test]
    fn one_line_a_second_with_the_count_of_what_it_covers() {
        let t0 = Instant::now();
        let mut errors = AcceptErrors::new("the fault injector API");
        let first = errors.note(&emfile(), t0).expect("the first is logged");
        assert!(first.starts_with("the fault injector API could not accept a connection: "));
        assert!(first.contains("retrying every 50 ms"), "{first}");
        let mut lines = Vec::new();
        // 20 failures a second (one per retry) for 3 seconds.
        for i in 1..=60 {
            lines.extend(errors.note(&emfile(), t0 + Duration::from_millis(50 * i)));
        }
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].contains(" 20 times in the last second"),
            "{}",
            lines[0]
        );
        assert!(lines.iter().all(|l| l.contains("Too many open files")));
    }
}
