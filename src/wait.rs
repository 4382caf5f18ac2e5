//! The one way to wait, with a bound: [`until`] for state that changes
//! together with a [`Notify`], [`poll`] for state that can only be asked for
//! (a server's INFO, the fault injector's status).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A wait that ran out of time, saying what was awaited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("waited {within:?} for {what}")]
pub struct TimedOut {
    /// What was awaited.
    pub what: String,
    /// For how long.
    pub within: Duration,
}

/// Re-checks `check` each time `changed` is notified until it yields a value,
/// or fails after `within` saying `what` was awaited. Whoever changes the state
/// must call `changed.notify_waiters()` after the change.
pub async fn until<T>(
    changed: &Notify,
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let deadline = Instant::now() + within;
    loop {
        // Registered before the check, so that no change slips in between.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(v) = check() {
            return Ok(v);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            if let Some(v) = check() {
                return Ok(v);
            }
            return Err(TimedOut {
                what: what.to_string(),
                within,
            });
        }
    }
}

/// What one look at polled state found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look<T, N> {
    /// The awaited value.
    Ready(T),
    /// Not yet; what was seen instead (for the message when time runs out).
    NotYet(N),
}

/// Asks `look` every `every` until it is [`Look::Ready`], for at most
/// `within`. Returns `Ok(Ok(value))`, `Ok(Err(last seen))` when time ran out
/// (asked once more at the deadline), or the first error `look` returned.
pub async fn poll<T, N, E, Fut>(
    every: Duration,
    within: Duration,
    mut look: impl FnMut() -> Fut,
) -> Result<Result<T, N>, E>
where
    Fut: Future<Output = Result<Look<T, N>, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        let seen = look().await?;
        match seen {
            Look::Ready(v) => return Ok(Ok(v)),
            Look::NotYet(n) if Instant::now() >= deadline => return Ok(Err(n)),
            Look::NotYet(_) => {}
        }
        tokio::time::sleep_until((Instant::now() + every).min(deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn wakes_on_change_and_times_out_with_the_reason() {
        let n = Arc::new(Notify::new());
        let v = Arc::new(AtomicU32::new(0));
        let (n2, v2) = (n.clone(), v.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            v2.store(7, Ordering::SeqCst);
            n2.notify_waiters();
        });
        let got = until(&n, Duration::from_secs(1), "seven", || {
            (v.load(Ordering::SeqCst) == 7).then_some(7)
        })
        .await
        .unwrap();
        assert_eq!(got, 7);
        let err = until(&n, Duration::from_millis(100), "eight", || None::<u32>)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "waited 100ms for eight");
    }

    #[tokio::test(start_paused = true)]
    async fn polls_until_ready_gives_the_last_look_at_the_deadline_and_stops_on_error() {
        let asked = AtomicU32::new(0);
        let look = || async {
            let n = asked.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(if n == 3 {
                Look::Ready(n)
            } else {
                Look::NotYet(n)
            })
        };
        let started = Instant::now();
        let got = poll(Duration::from_millis(10), Duration::from_secs(1), look).await;
        assert_eq!(got, Ok(Ok(3)));
        assert_eq!(started.elapsed(), Duration::from_millis(30));

        let started = Instant::now();
        let never = poll(
            Duration::from_millis(40),
            Duration::from_millis(100),
            || async { Ok::<Look<(), &str>, String>(Look::NotYet("still pending")) },
        )
        .await;
        assert_eq!(never, Ok(Err("still pending")));
        assert_eq!(started.elapsed(), Duration::from_millis(100));

        let failed = poll(
            Duration::from_millis(10),
            Duration::from_secs(1),
            || async { Err::<Look<(), ()>, _>("refused") },
        )
        .await;
        assert_eq!(failed, Err("refused"));
    }
}
