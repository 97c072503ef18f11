//! Budgets: what one run of a scenario may cost (`[failover]` in kbz.toml, with defaults),
//! and the breaches of a run: lost acknowledged writes or two primaries at once (E071), a
//! write gap or a VIP without holder longer than allowed (E072). Redis replicates
//! asynchronously: its loss is judged against the window `min-replicas-max-lag` allows
//! (writes acknowledged within that many seconds of the fault may be lost, no other).

use crate::fault::Fault;
use crate::scenario::{RunReport, Scenario, VictimRole};
use kbz_core::config::FailoverConfig;
use kbz_errors::Code;

/// The budget of one scenario.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Budget {
    /// Acknowledged writes a run may lose.
    pub lost: u64,
    /// The longest write gap allowed, in seconds.
    pub gap_secs: f64,
    /// The `[failover]` key the gap comes from (named in messages).
    pub gap_key: &'static str,
    /// Redis: acknowledged writes within this many seconds of the fault (before or after)
    /// may be lost; `lost` then counts the others. `None`: every loss counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_window_secs: Option<f64>,
    /// VIP scenarios: the longest time until a surviving lb host holds the VIP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip_secs: Option<f64>,
}

impl Budget {
    /// One line for `kbz-failover list`.
    pub fn describe(&self) -> String {
        let mut s = match self.lost_window_secs {
            Some(w) => format!("lost <= {} outside +-{w} s", self.lost),
            None => format!("lost <= {}", self.lost),
        };
        s.push_str(&format!(", gap <= {} s", self.gap_secs));
        if let Some(v) = self.vip_secs {
            s.push_str(&format!(", VIP <= {v} s"));
        }
        s
    }
}

/// One figure of a run outside its budget.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Breach {
    /// E071 (data: lost writes, two primaries) or E072 (time: write gap).
    pub code: Code,
    /// The run.
    pub run: u32,
    /// `lost`, `two_primaries` or `write_gap_secs`.
    pub figure: &'static str,
    /// What was measured.
    pub value: f64,
    /// What the budget allows.
    pub budget: f64,
    /// What to tell the operator.
    pub message: String,
}

impl Scenario {
    /// This scenario's budget under `cfg`: a graceful switchover gets the switchover gap, a
    /// crash of the etcd service alone the etcd gap, every crash or partition of a
    /// PostgreSQL host the crash gap; PostgreSQL runs in synchronous mode, so the loss budget is `postgres_lost`.
    pub fn budget(&self, cfg: &FailoverConfig) -> Budget {
        if self.victim == VictimRole::K8sMaster {
            // Probes, not writes: nothing to lose; the API answering is what counts.
            return Budget {
                lost: 0,
                gap_secs: cfg.k8s_api_gap_secs,
                gap_key: "k8s_api_gap_secs",
                lost_window_secs: None,
                vip_secs: None,
            };
        }
        if self.victim == VictimRole::GaleraWriter {
            // Synchronous (certified) replication: a commit acknowledged is on every node
            // of the Primary component; the gap is HAProxy's move to the next node plus
            // Galera evicting the dead one.
            return Budget {
                lost: 0,
                gap_secs: cfg.galera_gap_secs,
                gap_key: "galera_gap_secs",
                lost_window_secs: None,
                vip_secs: None,
            };
        }
        if self.victim == VictimRole::RabbitmqLeader {
            // Quorum queues confirm only what a majority stored: nothing confirmed is lost.
            return Budget {
                lost: 0,
                gap_secs: cfg.rabbitmq_gap_secs,
                gap_key: "rabbitmq_gap_secs",
                lost_window_secs: None,
                vip_secs: None,
            };
        }
        if self.victim == VictimRole::RedisMaster {
            return Budget {
                lost: 0,
                gap_secs: cfg.redis_gap_secs,
                gap_key: "redis_gap_secs",
                lost_window_secs: Some(
                    cfg.redis_lost_window_secs
                        .unwrap_or(kbz_redis::MIN_REPLICAS_MAX_LAG as f64),
                ),
                vip_secs: None,
            };
        }
        let (gap_secs, gap_key) = match (&self.fault, self.victim) {
            // Only HAProxy is down: the VIP moves to a healthy one, PostgreSQL keeps its
            // primary.
            (Fault::HoldDown { .. }, _) => (cfg.vip_gap_secs, "vip_gap_secs"),
            (Fault::Switchover, _) => (
                cfg.postgres_switchover_gap_secs,
                "postgres_switchover_gap_secs",
            ),
            // Only etcd is down: PostgreSQL keeps its primary and its sync standby. (A
            // partition of the etcd leader's host cuts PostgreSQL too: the crash gap.)
            (Fault::KillUnit { .. }, VictimRole::EtcdLeader) => {
                (cfg.etcd_member_gap_secs, "etcd_member_gap_secs")
            }
            _ => (cfg.postgres_crash_gap_secs, "postgres_crash_gap_secs"),
        };
        Budget {
            lost: cfg.postgres_lost,
            gap_secs,
            gap_key,
            lost_window_secs: None,
            vip_secs: self.watches_vip().then_some(cfg.vip_gap_secs),
        }
    }
}

/// The acknowledged writes a run lost: the worst of the VIP's read-back and every member's
/// own copy (a member that could not be read counts through the run's error instead).
pub fn lost(r: &RunReport) -> u64 {
    r.lost_on_member
        .values()
        .copied()
        .filter(|l| *l != u64::MAX)
        .chain([r.vip.lost])
        .max()
        .unwrap_or(0)
}

/// The breaches of one completed run (a run that ended in an error is reported by its own
/// E-code, not judged here).
pub fn evaluate(s: &Scenario, cfg: &FailoverConfig, r: &RunReport) -> Vec<Breach> {
    let b = s.budget(cfg);
    let mut out = Vec::new();
    let lost = lost(r);
    if let Some(w) = b.lost_window_secs {
        // Every lost write must have been acknowledged within the window of the fault.
        let outside = r.lost_ack_offsets.iter().filter(|o| o.abs() > w).count() as u64;
        // Lost on a member's copy only (not through the VIP): no acknowledgement time is
        // known, so it counts as outside.
        let unexplained = lost.saturating_sub(r.vip.lost);
        let outside = outside + unexplained;
        if outside > b.lost {
            out.push(Breach {
                code: Code::E071,
                run: r.run,
                figure: "lost_outside_window",
                value: outside as f64,
                budget: b.lost as f64,
                message: format!(
                    "{} run {}: {outside} of {lost} lost acknowledged write(s) fall outside the +-{w} s min-replicas-max-lag window of the fault (budget [failover] redis_lost_window_secs = {w})",
                    s.name, r.run
                ),
            });
        }
    } else if lost > b.lost {
        out.push(Breach {
            code: Code::E071,
            run: r.run,
            figure: "lost",
            value: lost as f64,
            budget: b.lost as f64,
            message: format!(
                "{} run {}: {lost} acknowledged write(s) lost (budget [failover] postgres_lost = {}); first ids {:?}",
                s.name, r.run, b.lost, r.vip.lost_sample
            ),
        });
    }
    // Redis: an old master that comes back is a master until Sentinel demotes it (a second
    // or two); that is reported in the run, and what it costs shows in the loss figures.
    if r.two_primaries_seen && b.lost_window_secs.is_none() {
        out.push(Breach {
            code: Code::E071,
            run: r.run,
            figure: "two_primaries",
            value: 1.0,
            budget: 0.0,
            message: format!(
                "{} run {}: two members answered as writable primaries at once",
                s.name, r.run
            ),
        });
    }
    if let Some(v) = b.vip_secs {
        let moved = r.vip_moved_secs.unwrap_or(f64::INFINITY);
        if moved > v {
            out.push(Breach {
                code: Code::E072,
                run: r.run,
                figure: "vip_secs",
                value: moved,
                budget: v,
                message: match r.vip_moved_secs {
                    Some(m) => format!(
                        "{} run {}: no surviving lb host held the PostgreSQL VIP for {m:.1} s (budget [failover] vip_gap_secs = {v})",
                        s.name, r.run
                    ),
                    None => format!(
                        "{} run {}: no surviving lb host took the PostgreSQL VIP (budget [failover] vip_gap_secs = {v})",
                        s.name, r.run
                    ),
                },
            });
        }
    }
    if r.max_write_gap_secs > b.gap_secs {
        out.push(Breach {
            code: Code::E072,
            run: r.run,
            figure: "write_gap_secs",
            value: r.max_write_gap_secs,
            budget: b.gap_secs,
            message: format!(
                "{} run {}: no write was acknowledged for {:.1} s (budget [failover] {} = {})",
                s.name, r.run, r.max_write_gap_secs, b.gap_key, b.gap_secs
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn report(lost: u64, member_lost: u64, gap: f64) -> RunReport {
        RunReport {
            scenario: "x".into(),
            run: 2,
            vip: Verdict {
                acked: 500,
                lost,
                unexpected: 3,
                lost_sample: vec![],
            },
            lost_on_member: [
                ("db1".to_string(), member_lost),
                ("db2".to_string(), u64::MAX),
            ]
            .into_iter()
            .collect(),
            max_write_gap_secs: gap,
            victim_streaming_secs: Some(9.0),
            ..RunReport::default()
        }
    }

    fn named(n: &str) -> Scenario {
        Scenario::named(n).expect("known scenario")
    }

    #[test]
    fn each_scenario_gets_the_documented_budget() {
        let cfg = FailoverConfig::default();
        let b = named("postgres-leader-crash").budget(&cfg);
        assert_eq!(
            (b.lost, b.gap_secs, b.gap_key),
            (0, 35.0, "postgres_crash_gap_secs")
        );
        let b = named("postgres-switchover").budget(&cfg);
        assert_eq!(
            (b.gap_secs, b.gap_key),
            (5.0, "postgres_switchover_gap_secs")
        );
        assert_eq!(named("etcd-member-crash").budget(&cfg).gap_secs, 5.0);
        // The etcd leader's host cut off takes its PostgreSQL member with it.
        assert_eq!(named("etcd-leader-partition").budget(&cfg).gap_secs, 35.0);
        let cfg = FailoverConfig {
            postgres_crash_gap_secs: 20.0,
            ..FailoverConfig::default()
        };
        assert_eq!(
            named("postgres-leader-partition").budget(&cfg).gap_secs,
            20.0
        );
        // Galera certifies every commit on the whole Primary component: nothing may be lost,
        // and its gap has its own key.
        let g = named("galera-node-crash");
        assert_eq!(g.service(), crate::Service::Mariadb);
        assert!(g.needs_commands());
        let b = g.budget(&FailoverConfig::default());
        assert_eq!(
            (
                b.lost,
                b.gap_secs,
                b.gap_key,
                b.lost_window_secs,
                b.vip_secs
            ),
            (0, 20.0, "galera_gap_secs", None, None)
        );
    }

    #[test]
    fn a_run_inside_its_budget_has_no_breach() {
        let s = named("postgres-leader-crash");
        let r = report(0, 0, 34.9);
        assert_eq!(evaluate(&s, &FailoverConfig::default(), &r), vec![]);
        // Unexpected rows (acknowledgements lost in flight) are reported, never a breach.
        assert_eq!(r.vip.unexpected, 3);
    }

    #[test]
    fn lost_writes_on_any_copy_and_long_gaps_are_breaches_with_their_codes() {
        let s = named("postgres-leader-crash");
        let cfg = FailoverConfig::default();
        // Lost only on a member's own copy: still lost.
        let b = evaluate(&s, &cfg, &report(0, 4, 12.0));
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(
            (b[0].code, b[0].figure, b[0].value),
            (Code::E071, "lost", 4.0)
        );
        assert!(
            b[0].message.contains("run 2: 4 acknowledged"),
            "{}",
            b[0].message
        );
        let b = evaluate(&s, &cfg, &report(1, 0, 36.0));
        let codes: Vec<(Code, &str)> = b.iter().map(|x| (x.code, x.figure)).collect();
        assert_eq!(
            codes,
            vec![(Code::E071, "lost"), (Code::E072, "write_gap_secs")]
        );
        assert!(
            b[1].message.contains("postgres_crash_gap_secs = 35"),
            "{}",
            b[1].message
        );
        // A switchover is held to 5 s.
        let b = evaluate(&named("postgres-switchover"), &cfg, &report(0, 0, 6.0));
        assert_eq!(b[0].code, Code::E072);
        let mut split = report(0, 0, 1.0);
        split.two_primaries_seen = true;
        assert_eq!(evaluate(&s, &cfg, &split)[0].figure, "two_primaries");
    }

    #[test]
    fn a_rabbitmq_node_crash_may_lose_no_confirmed_message() {
        let s = named("rabbitmq-node-crash");
        assert_eq!(s.service(), crate::Service::Rabbitmq);
        assert!(s.needs_commands());
        let cfg = FailoverConfig::default();
        let b = s.budget(&cfg);
        assert_eq!(
            (b.lost, b.gap_secs, b.gap_key),
            (0, 30.0, "rabbitmq_gap_secs")
        );
        assert_eq!(b.describe(), "lost <= 0, gap <= 30 s");
        // One confirmed message missing is E071, whatever the gap; a 31 s gap is E072.
        let b = evaluate(&s, &cfg, &report(1, 0, 3.0));
        assert_eq!((b[0].code, b[0].figure), (Code::E071, "lost"));
        let b = evaluate(&s, &cfg, &report(0, 0, 31.0));
        assert_eq!(b[0].code, Code::E072);
        assert!(
            b[0].message.contains("rabbitmq_gap_secs = 30"),
            "{}",
            b[0].message
        );
        assert!(evaluate(&s, &cfg, &report(0, 0, 12.0)).is_empty());
    }

    #[test]
    fn redis_loss_is_judged_against_the_min_replicas_max_lag_window() {
        let s = named("redis-master-partition");
        let cfg = FailoverConfig::default();
        let b = s.budget(&cfg);
        assert_eq!(
            (b.gap_secs, b.gap_key, b.lost_window_secs),
            (
                15.0,
                "redis_gap_secs",
                Some(kbz_redis::MIN_REPLICAS_MAX_LAG as f64)
            )
        );
        assert_eq!(b.describe(), "lost <= 0 outside +-10 s, gap <= 15 s");
        // Three writes lost, acknowledged 0.4 s before and 2 and 9 s after the fault: the
        // asynchronous replication allows them.
        let mut r = report(3, 3, 12.0);
        r.lost_ack_offsets = vec![-0.4, 2.0, 9.0];
        assert_eq!(evaluate(&s, &cfg, &r), vec![]);
        // One acknowledged 30 s before the fault: no window explains it.
        r.lost_ack_offsets = vec![-30.0, 2.0, 9.0];
        let b = evaluate(&s, &cfg, &r);
        assert_eq!(
            (b.len(), b[0].code, b[0].figure, b[0].value),
            (1, Code::E071, "lost_outside_window", 1.0)
        );
        // A gap over 15 s is E072 against redis_gap_secs; the operator's window is the one used.
        r.lost_ack_offsets = vec![-30.0];
        r.max_write_gap_secs = 16.0;
        let cfg = FailoverConfig {
            redis_lost_window_secs: Some(40.0),
            ..FailoverConfig::default()
        };
        let b = evaluate(&named("redis-master-crash"), &cfg, &r);
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(
            b[0].message.contains("redis_gap_secs = 15"),
            "{}",
            b[0].message
        );
    }

    #[test]
    fn the_vip_must_move_within_its_budget() {
        let cfg = FailoverConfig::default();
        let s = named("vip-holder-crash");
        assert_eq!(s.budget(&cfg).vip_secs, Some(5.0));
        assert_eq!(s.budget(&cfg).gap_key, "postgres_crash_gap_secs");
        let h = named("haproxy-down").budget(&cfg);
        assert_eq!(
            (h.gap_secs, h.gap_key, h.vip_secs),
            (5.0, "vip_gap_secs", Some(5.0))
        );
        let mut r = report(0, 0, 3.0);
        r.vip_moved_secs = Some(3.2);
        assert_eq!(evaluate(&s, &cfg, &r), vec![]);
        r.vip_moved_secs = Some(6.5);
        let b = evaluate(&s, &cfg, &r);
        assert_eq!(
            (b[0].code, b[0].figure, b[0].value),
            (Code::E072, "vip_secs", 6.5)
        );
        r.vip_moved_secs = None;
        assert!(evaluate(&s, &cfg, &r)[0]
            .message
            .contains("took the PostgreSQL VIP"));
        // PostgreSQL scenarios do not watch the VIP.
        assert_eq!(named("postgres-leader-crash").budget(&cfg).vip_secs, None);
    }

    #[test]
    fn an_operator_budget_allows_what_it_says() {
        let cfg = FailoverConfig {
            postgres_lost: 5,
            postgres_crash_gap_secs: 60.0,
            ..FailoverConfig::default()
        };
        let s = named("postgres-leader-partition");
        assert!(evaluate(&s, &cfg, &report(5, 2, 59.0)).is_empty());
        assert_eq!(evaluate(&s, &cfg, &report(6, 0, 1.0)).len(), 1);
    }
}
