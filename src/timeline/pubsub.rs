//! Claims about pub/sub through maintenance: a publisher numbers its
//! messages; a subscriber must receive each one published, in order. A message
//! received twice (a client re-subscribes on its new connection before it lets
//! the old one go) is allowed and counted.

use super::{Claim, Unmet};

/// One message a publisher sent, numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Its number (also its payload).
    pub n: u64,
    /// How many subscribers the server said it reached, or why it failed.
    pub outcome: Result<i64, String>,
}

/// What a subscriber got of what was published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Messages published.
    pub published: usize,
    /// Of them, received.
    pub received: usize,
    /// Received more than once.
    pub duplicates: usize,
    /// Published while no subscriber was there (the server said it reached
    /// none), allowed only where a claim says so.
    pub unheard: usize,
}

/// Every message of `published` is in `received` (payloads, in arrival
/// order), first arrivals in publishing order; publishing itself saw no error.
pub fn every_message_received(published: &[Published], received: &[String]) -> Claim<Delivery> {
    let failed: Vec<String> = published
        .iter()
        .filter_map(|p| p.outcome.as_ref().err().map(|e| format!("#{}: {e}", p.n)))
        .collect();
    if !failed.is_empty() {
        unmet!(
            "{} of {} publishes failed; first: {:?}",
            failed.len(),
            published.len(),
            &failed[..failed.len().min(3)]
        );
    }
    let sent: std::collections::HashSet<u64> = published.iter().map(|p| p.n).collect();
    let mut seen = std::collections::HashSet::new();
    let mut first_order = Vec::new();
    let mut duplicates = 0;
    for r in received {
        let Some(n) = r.parse::<u64>().ok().filter(|n| sent.contains(n)) else {
            unmet!("received {r:?}, which the publisher never sent");
        };
        if seen.insert(n) {
            first_order.push(n);
        } else {
            duplicates += 1;
        }
    }
    let missing: Vec<&Published> = published.iter().filter(|p| !seen.contains(&p.n)).collect();
    if let Some(first) = missing.first() {
        let unheard = missing.iter().filter(|p| p.outcome == Ok(0)).count();
        unmet!(
            "missed {} of {} messages (first: #{}); the server reached no subscriber with {} of them",
            missing.len(),
            published.len(),
            first.n,
            unheard
        );
    }
    if let Some(w) = first_order.windows(2).find(|w| w[0] > w[1]) {
        unmet!("received #{} before #{}: out of order", w[0], w[1]);
    }
    Ok(Delivery {
        published: published.len(),
        received: seen.len(),
        duplicates,
        unheard: 0,
    })
}

/// As [`every_message_received`], except for messages published while no
/// subscriber was there (the server answered that it reached none: a
/// sharded channel's slot changing hands, its subscriber not yet subscribed
/// on the new node); delivery must go on after the last of them.
pub fn delivered_through_moves(published: &[Published], received: &[String]) -> Claim<Delivery> {
    let heard: Vec<Published> = published
        .iter()
        .filter(|p| p.outcome != Ok(0))
        .cloned()
        .collect();
    let last_unheard = published
        .iter()
        .filter(|p| p.outcome == Ok(0))
        .map(|p| p.n)
        .max();
    if let Some(last) = last_unheard {
        let after = received
            .iter()
            .filter_map(|r| r.parse::<u64>().ok())
            .any(|n| n > last);
        if !after {
            // Delivery stopped: the message lost as the subscription went
            // (the server reached it, the client had let it go) is part of
            // the same story, told after it.
            let also = match every_message_received(&heard, received) {
                Ok(_) => String::new(),
                Err(Unmet(why)) => format!("; before that, {why}"),
            };
            unmet!("nothing published after #{last} (which reached no subscriber) arrived: delivery did not resume{also}");
        }
    }
    let mut d = every_message_received(&heard, received)?;
    d.published = published.len();
    d.unheard = published.len() - heard.len();
    Ok(d)
}

/// Whether the last `tail` messages of `published` tell one story: each
/// reached no subscriber, or each reached one and was received. Until then
/// the subscriber is still reacting to a move (a connection it is letting
/// go still hears the server, a new one is not subscribed yet), and a
/// verdict would judge the race, not the client.
pub fn delivery_settled(published: &[Published], received: &[String], tail: usize) -> bool {
    if tail == 0 || published.len() < tail {
        return false;
    }
    let last = &published[published.len() - tail..];
    if last.iter().all(|p| p.outcome == Ok(0)) {
        return true;
    }
    let got: std::collections::HashSet<u64> =
        received.iter().filter_map(|r| r.parse().ok()).collect();
    last.iter()
        .all(|p| matches!(p.outcome, Ok(n) if n > 0) && got.contains(&p.n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(n: u64) -> Vec<Published> {
        (1..=n).map(|n| Published { n, outcome: Ok(1) }).collect()
    }

    fn got(ns: &[u64]) -> Vec<String> {
        ns.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn all_received_in_order_holds_and_counts_duplicates() {
        let d = every_message_received(&published(4), &got(&[1, 2, 2, 3, 4])).unwrap();
        assert_eq!(
            d,
            Delivery {
                published: 4,
                received: 4,
                duplicates: 1,
                unheard: 0,
            }
        );
    }

    #[test]
    fn a_gap_a_reorder_a_stranger_or_a_failed_publish_is_unmet() {
        let Unmet(why) = every_message_received(&published(4), &got(&[1, 2, 4])).unwrap_err();
        assert!(
            why.starts_with("missed 1 of 4 messages (first: #3)"),
            "{why}"
        );
        let Unmet(why) = every_message_received(&published(3), &got(&[1, 3, 2])).unwrap_err();
        assert!(why.contains("received #3 before #2"), "{why}");
        let Unmet(why) = every_message_received(&published(1), &got(&[1, 99])).unwrap_err();
        assert!(
            why.contains("\"99\", which the publisher never sent"),
            "{why}"
        );
        let Unmet(why) = every_message_received(&published(1), &["x".into()]).unwrap_err();
        assert!(why.contains("\"x\""), "{why}");
        let mut p = published(2);
        p[1].outcome = Err("timed out".into());
        let Unmet(why) = every_message_received(&p, &got(&[1])).unwrap_err();
        assert!(why.starts_with("1 of 2 publishes failed"), "{why}");
        let mut p = published(2);
        p[1].outcome = Ok(0);
        let Unmet(why) = every_message_received(&p, &got(&[1])).unwrap_err();
        assert!(
            why.ends_with("reached no subscriber with 1 of them"),
            "{why}"
        );
    }

    #[test]
    fn messages_no_subscriber_heard_may_be_missing_if_delivery_resumes() {
        let mut p = published(5);
        p[2].outcome = Ok(0);
        let d = delivered_through_moves(&p, &got(&[1, 2, 4, 5])).unwrap();
        assert_eq!((d.published, d.received, d.unheard), (5, 4, 1));
        // A message the server delivered is still owed.
        let Unmet(why) = delivered_through_moves(&p, &got(&[1, 2, 5])).unwrap_err();
        assert!(
            why.starts_with("missed 1 of 4 messages (first: #4)"),
            "{why}"
        );
        // Nothing after the gap: delivery stopped.
        p[4].outcome = Ok(0);
        p[3].outcome = Ok(0);
        let Unmet(why) = delivered_through_moves(&p, &got(&[1, 2])).unwrap_err();
        assert!(why.contains("did not resume"), "{why}");
        // A message lost as the subscription went, then silence: the
        // silence is the verdict, the loss its detail.
        let mut p = published(5);
        p[3].outcome = Ok(0);
        p[4].outcome = Ok(0);
        let Unmet(why) = delivered_through_moves(&p, &got(&[1, 2])).unwrap_err();
        assert!(
            why.contains("did not resume; before that, missed 1 of 3 messages (first: #3)"),
            "{why}"
        );
    }

    #[test]
    fn delivery_settles_when_the_last_messages_agree() {
        let mut p = published(6);
        // Received to the end.
        assert!(delivery_settled(&p, &got(&[1, 2, 3, 4, 5, 6]), 3));
        // The last one reached a subscriber that has not delivered it (yet).
        assert!(!delivery_settled(&p, &got(&[1, 2, 3, 4, 5]), 3));
        // A subscription went: a heard message lost, then silence.
        p[4].outcome = Ok(0);
        p[5].outcome = Ok(0);
        assert!(!delivery_settled(&p, &got(&[1, 2, 3]), 3));
        assert!(delivery_settled(&p, &got(&[1, 2, 3]), 2));
        // Too few to tell.
        assert!(!delivery_settled(&p, &got(&[]), 7));
        assert!(!delivery_settled(&p, &got(&[]), 0));
    }
}
