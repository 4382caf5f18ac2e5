//! A handoff: after MOVING, a new connection to the address it named (or the
//! configured one), swapped in while the old one's requests finish there,
//! with retries and a give-up that keeps the old address.

use super::*;

impl ManagedConnection {
    pub(super) async fn handoff(&self, seq: i64, target: Endpoint) {
        let o = self.shared.options.clone();
        let endpoint = target.to_string();
        self.shared.emit(
            self.id,
            EventKind::HandoffStarted {
                seq,
                endpoint: endpoint.clone(),
            },
        );
        // Waits for a turn among the client's handoff workers.
        let Ok(_turn) = self.shared.handoff_turns.acquire().await else {
            return;
        };
        let mut reason = String::new();
        for attempt in 0..=o.max_handoff_retries {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            match tokio::time::timeout(o.handoff_timeout, self.dial(&target)).await {
                Ok(Ok(active)) => {
                    if self.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    let old = self.current.lock().unwrap().replace(active);
                    // Requests in flight hold clones of the old connection and
                    // finish there; it closes when the last of them is done.
                    drop(old);
                    self.shared.emit(
                        self.id,
                        EventKind::HandoffSucceeded {
                            seq,
                            endpoint: endpoint.clone(),
                        },
                    );
                    self.close_window(WindowKey::Handoff(seq));
                    return;
                }
                Ok(Err(e)) => reason = e.chain(),
                Err(_) => reason = format!("no connection within {:?}", o.handoff_timeout),
            }
            self.shared.emit(
                self.id,
                EventKind::HandoffAttemptFailed {
                    seq,
                    endpoint: endpoint.clone(),
                    reason: reason.clone(),
                },
            );
            if attempt < o.max_handoff_retries {
                let backoff = Duration::from_millis(100 << attempt.min(4));
                tokio::time::sleep(backoff).await;
            }
        }
        // New connections must not keep dialling an address that failed.
        {
            let mut redirect = self.shared.redirect.lock().unwrap();
            if redirect.as_ref().is_some_and(|r| r.endpoint == target) {
                *redirect = None;
            }
        }
        self.shared.emit(
            self.id,
            EventKind::HandoffFailed {
                seq,
                endpoint,
                reason,
            },
        );
        self.close_window(WindowKey::Handoff(seq));
    }
}
