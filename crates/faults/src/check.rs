//! The lost-write checker and the write-gap figures: what was acknowledged against what is
//! there, through the VIP and on every member.

use crate::workload::{Ack, Tally};
use std::collections::{BTreeMap, HashSet};

/// The verdict on one read-back.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Acknowledged ids.
    pub acked: u64,
    /// Acknowledged and absent: the figure that must be 0.
    pub lost: u64,
    /// Present and never acknowledged (their acknowledgement was lost in the fault: the
    /// client timed out or the connection broke after the commit).
    pub unexpected: u64,
    /// Up to 20 lost ids, for the logs.
    pub lost_sample: Vec<i64>,
}

/// The acknowledged ids absent from `present`, sorted.
pub fn lost_ids(tally: &Tally, present: &[i64]) -> Vec<i64> {
    let have: HashSet<i64> = present.iter().copied().collect();
    let mut lost: Vec<i64> = tally
        .acks
        .iter()
        .map(|a| a.id)
        .filter(|id| !have.contains(id))
        .collect();
    lost.sort_unstable();
    lost.dedup();
    lost
}

/// Compares the acknowledged ids with the ids `present`.
pub fn verdict(tally: &Tally, present: &[i64]) -> Verdict {
    let have: HashSet<i64> = present.iter().copied().collect();
    let acked: HashSet<i64> = tally.acks.iter().map(|a| a.id).collect();
    let mut lost: Vec<i64> = acked
        .iter()
        .filter(|id| !have.contains(id))
        .copied()
        .collect();
    lost.sort_unstable();
    let unexpected = have.iter().filter(|id| !acked.contains(id)).count() as u64;
    Verdict {
        acked: acked.len() as u64,
        lost: lost.len() as u64,
        unexpected,
        lost_sample: lost.into_iter().take(20).collect(),
    }
}

/// The longest time without any acknowledged write between `from` and `to` (seconds on the
/// workload's clock), and when it ended (the acknowledgement that ended it; `None` if it
/// lasted until `to`).
pub fn longest_gap(acks: &[Ack], from: f64, to: f64) -> (f64, Option<f64>) {
    let mut times: Vec<f64> = acks
        .iter()
        .map(|a| a.at)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut prev = from;
    let mut gap: f64 = 0.0;
    let mut end = None;
    for t in times.iter().copied() {
        if t - prev > gap {
            gap = t - prev;
            end = Some(t);
        }
        prev = t;
    }
    if to - prev > gap {
        gap = to - prev;
        end = None;
    }
    (gap, end)
}

/// How many acknowledgements each server gave after `from` (seconds on the workload's
/// clock), keyed by address.
pub fn acks_by_server(acks: &[Ack], from: f64) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for a in acks.iter().filter(|a| a.at >= from) {
        let k = a
            .server
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        *m.entry(k).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, at: f64) -> Ack {
        Ack {
            id,
            at,
            server: Some("10.0.0.11".parse().expect("ip")),
        }
    }

    #[test]
    fn lost_and_unexpected_are_told_apart() {
        let tally = Tally {
            acks: vec![ack(1, 0.1), ack(2, 0.2), ack(3, 0.3), ack(5, 0.5)],
            ..Tally::default()
        };
        // 3 and 5 acknowledged but gone; 4 there without an acknowledgement.
        let v = verdict(&tally, &[1, 2, 4]);
        assert_eq!(v.acked, 4);
        assert_eq!(v.lost, 2);
        assert_eq!(v.unexpected, 1);
        assert_eq!(v.lost_sample, vec![3, 5]);
        assert_eq!(verdict(&tally, &[1, 2, 3, 5]).lost, 0);
    }

    #[test]
    fn the_gap_counts_the_silence_at_both_ends() {
        let acks = vec![ack(1, 1.0), ack(2, 1.5), ack(3, 9.0), ack(4, 9.2)];
        let (gap, end) = longest_gap(&acks, 1.2, 10.0);
        assert!((gap - 7.5).abs() < 1e-9, "{gap}");
        assert_eq!(end, Some(9.0));
        // No write at all in the window: the whole window is the gap.
        let (gap, end) = longest_gap(&acks, 2.0, 8.0);
        assert!((gap - 6.0).abs() < 1e-9);
        assert_eq!(end, None);
        assert_eq!(acks_by_server(&acks, 1.2).get("10.0.0.11"), Some(&3));
    }
}
