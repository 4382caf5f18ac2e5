//! Waiting for a condition that changes together with a [`Notify`], with a bound.

use std::time::Duration;

use anyhow::{bail, Result};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Re-checks `check` each time `changed` is notified until it yields a value,
/// or fails after `within` saying `what` was awaited. Whoever changes the state
/// must call `changed.notify_waiters()` after the change.
pub async fn until<T>(
    changed: &Notify,
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
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
            bail!("waited {within:?} for {what}");
        }
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
}
