//! Scenarios (a fault against a role, on a service), the fleet they run against, the
//! figures of one run and the summary over several. Running one is [`crate::run`].

use crate::check::Verdict;
use crate::fault::{Fault, HostCommands};
use crate::k8s::{K8sService, K8sTarget};
use crate::mariadb::{GaleraService, GaleraTarget};
use crate::observe::Member;
use crate::postgres::PgTarget;
use crate::rabbitmq::{RabbitService, RabbitTarget};
use crate::redis::RedisTarget;
use crate::service::{PgService, RedisService, ServiceTarget};
use crate::FaultError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Which member a scenario hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VictimRole {
    /// The Patroni leader (the PostgreSQL primary).
    PostgresLeader,
    /// A replica (the synchronous standby when there is one).
    PostgresReplica,
    /// The etcd Raft leader.
    EtcdLeader,
    /// The Redis master as the Sentinels report it.
    RedisMaster,
    /// The lb host holding the PostgreSQL VIP.
    VipHolder,
    /// The Kubernetes master holding the `kube-controller-manager` lease.
    K8sMaster,
    /// The Galera node the MariaDB VIP sends writes to (HAProxy's one writer).
    GaleraWriter,
    /// The RabbitMQ node leading the scratch quorum queue.
    RabbitmqLeader,
}

/// The service a scenario writes to and measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// PostgreSQL through its VIP.
    Postgres,
    /// Redis through its VIP.
    Redis,
    /// The Kubernetes API through its VIP (probes, no writes).
    Kubernetes,
    /// MariaDB Galera through its VIP.
    Mariadb,
    /// RabbitMQ through its VIP (publisher confirms to a quorum queue).
    Rabbitmq,
}

/// A named fault against a role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scenario {
    /// Name, e.g. `postgres-leader-partition`.
    pub name: String,
    /// The victim.
    pub victim: VictimRole,
    /// The fault.
    pub fault: Fault,
}

impl Scenario {
    /// The built-in scenarios.
    pub fn all() -> Vec<Scenario> {
        let s = |name: &str, victim, fault| Scenario {
            name: name.into(),
            victim,
            fault,
        };
        vec![
            s(
                "postgres-leader-partition",
                VictimRole::PostgresLeader,
                Fault::PeerPartition,
            ),
            s(
                "postgres-leader-crash",
                VictimRole::PostgresLeader,
                Fault::PowerCut,
            ),
            s(
                "postgres-leader-isolation",
                VictimRole::PostgresLeader,
                Fault::Isolate,
            ),
            s(
                "postgres-leader-kill",
                VictimRole::PostgresLeader,
                Fault::KillUnit {
                    unit: kbz_postgres::SERVICE.into(),
                },
            ),
            s(
                "postgres-replica-partition",
                VictimRole::PostgresReplica,
                Fault::PeerPartition,
            ),
            s(
                "etcd-leader-partition",
                VictimRole::EtcdLeader,
                Fault::PeerPartition,
            ),
            s(
                "postgres-switchover",
                VictimRole::PostgresLeader,
                Fault::Switchover,
            ),
            s(
                "etcd-member-crash",
                VictimRole::EtcdLeader,
                Fault::KillUnit {
                    unit: kbz_etcd::SERVICE.into(),
                },
            ),
            s(
                "redis-master-crash",
                VictimRole::RedisMaster,
                Fault::PowerCut,
            ),
            s(
                "redis-master-partition",
                VictimRole::RedisMaster,
                Fault::PeerPartition,
            ),
            s("vip-holder-crash", VictimRole::VipHolder, Fault::PowerCut),
            s(
                "haproxy-down",
                VictimRole::VipHolder,
                Fault::HoldDown {
                    unit: kbz_haproxy::SERVICE.into(),
                },
            ),
            s("k8s-master-crash", VictimRole::K8sMaster, Fault::PowerCut),
            s(
                "galera-node-crash",
                VictimRole::GaleraWriter,
                Fault::PowerCut,
            ),
            s(
                "rabbitmq-node-crash",
                VictimRole::RabbitmqLeader,
                Fault::PowerCut,
            ),
        ]
    }

    /// The service its writers use.
    pub fn service(&self) -> Service {
        match self.victim {
            VictimRole::RedisMaster => Service::Redis,
            VictimRole::K8sMaster => Service::Kubernetes,
            VictimRole::GaleraWriter => Service::Mariadb,
            VictimRole::RabbitmqLeader => Service::Rabbitmq,
            _ => Service::Postgres,
        }
    }

    /// Whether it measures how long the PostgreSQL VIP is held by nobody.
    pub fn watches_vip(&self) -> bool {
        self.victim == VictimRole::VipHolder
    }

    /// The known name nearest to `name` (for "did you mean").
    pub fn nearest(name: &str) -> Option<String> {
        Scenario::all()
            .into_iter()
            .map(|s| (strsim::damerau_levenshtein(name, &s.name), s.name))
            .min_by_key(|(d, _)| *d)
            .map(|(_, n)| n)
    }

    /// Whether it needs [`Target::power`] (or [`Target::isolate`]) commands.
    pub fn needs_commands(&self) -> bool {
        matches!(self.fault, Fault::PowerCut | Fault::Isolate)
    }

    /// One line for `kbz-failover list`: the victim and the fault.
    pub fn describe(&self) -> String {
        let victim = match self.victim {
            VictimRole::PostgresLeader => "the Patroni leader",
            VictimRole::PostgresReplica => "a PostgreSQL replica (the sync standby)",
            VictimRole::EtcdLeader => "the etcd leader",
            VictimRole::RedisMaster => "the Redis master (as the Sentinels name it)",
            VictimRole::VipHolder => "the lb host holding the PostgreSQL VIP",
            VictimRole::K8sMaster => {
                "the Kubernetes master holding the kube-controller-manager lease"
            }
            VictimRole::GaleraWriter => "the Galera node the MariaDB VIP writes to",
            VictimRole::RabbitmqLeader => "the RabbitMQ node leading the scratch quorum queue",
        };
        format!("{}: {victim}", self.fault.describe())
    }

    /// The built-in scenario called `name`.
    pub fn named(name: &str) -> Result<Scenario, FaultError> {
        Scenario::all()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| FaultError::Unsupported {
                scenario: name.into(),
                reason: format!(
                    "no such scenario; known: {}",
                    Scenario::all()
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// The fewest `k8s-master` hosts a master crash runs on: with one of 3 down, etcd keeps its
/// quorum (2 of 3); with one of 2 down it would not.
pub const MIN_K8S_MASTERS: usize = 3;

/// The fewest Galera nodes a node crash runs on: with one of 3 down the other two keep a
/// Primary component (2 of 3); with one of 2 down neither would.
pub const MIN_GALERA_NODES: usize = 3;

/// How long each phase lasts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    /// Writers run this long before the fault.
    pub before: Duration,
    /// The fault lasts this long (partition or power off; a killed unit restarts itself).
    pub fault: Duration,
    /// Writers keep running this long once the cluster is healthy again.
    pub after: Duration,
    /// Longest wait for a healthy cluster (before the run and after the heal).
    pub healthy_within: Duration,
    /// Consecutive healthy observations (2 s apart) that count as healthy.
    pub stable_samples: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            before: Duration::from_secs(5),
            fault: Duration::from_secs(35),
            after: Duration::from_secs(3),
            healthy_within: Duration::from_secs(240),
            stable_samples: 3,
        }
    }
}

/// The fleet a scenario runs against.
#[derive(Debug, Clone)]
pub struct Target {
    /// The PostgreSQL members (also the etcd members on the usual 3-host layout).
    pub members: Vec<Member>,
    /// Where the PostgreSQL writers connect (the VIP) and with which credentials; `None` on a
    /// fleet without PostgreSQL (the PostgreSQL and VIP scenarios then refuse).
    pub pg: Option<PgTarget>,
    /// The Redis members, VIP and Sentinels; the Redis scenarios refuse without them.
    pub redis: Option<RedisTarget>,
    /// The lb hosts (keepalived + HAProxy); the VIP scenarios refuse without them.
    pub lbs: Vec<Member>,
    /// The Kubernetes masters and API VIP; the Kubernetes scenario refuses without them.
    pub k8s: Option<K8sTarget>,
    /// The Galera nodes, the MariaDB VIP and the application user; the Galera scenario
    /// refuses without them.
    pub galera: Option<GaleraTarget>,
    /// The RabbitMQ members, VIP and application user; the RabbitMQ scenario refuses
    /// without them.
    pub rabbitmq: Option<RabbitTarget>,
    /// Commands for [`Fault::PowerCut`]; a scenario with a power cut fails without them.
    pub power: Option<HostCommands>,
    /// Commands for [`Fault::Isolate`].
    pub isolate: Option<HostCommands>,
    /// Concurrent writers.
    pub writers: usize,
    /// Where the controller's own connections really go (tunnels through the bastion), for
    /// what it opens itself: the heal's look at a host's SSH port. The service clients carry
    /// their own ([`PgTarget::routes`], `Endpoint::routes`). Empty: directly.
    pub routes: kbz_core::net::Routes,
}

impl Target {
    /// The PostgreSQL VIP target, or why scenario `s` cannot run without one.
    pub fn postgres(&self, s: &Scenario) -> Result<&PgTarget, FaultError> {
        self.pg.as_ref().ok_or_else(|| FaultError::Unsupported {
            scenario: s.name.clone(),
            reason: "it writes through the PostgreSQL VIP and the target has none ([vips] postgres and 2+ postgres hosts)".into(),
        })
    }

    /// The service `s` writes to and measures.
    pub fn service(&self, s: &Scenario) -> Result<Arc<dyn ServiceTarget>, FaultError> {
        match s.service() {
            Service::Postgres => Ok(Arc::new(PgService {
                members: self.members.clone(),
                pg: self.postgres(s)?.clone(),
            })),
            Service::Redis => match &self.redis {
                Some(r) if r.members.len() >= 2 => Ok(Arc::new(RedisService { t: r.clone() })),
                _ => Err(FaultError::Unsupported {
                    scenario: s.name.clone(),
                    reason:
                        "no Redis master and replica to fault ([vips] redis and 2+ redis hosts)"
                            .into(),
                }),
            },
            Service::Rabbitmq => match &self.rabbitmq {
                Some(r) if r.members.len() >= 3 => Ok(Arc::new(RabbitService { t: r.clone() })),
                other => Err(FaultError::Unsupported {
                    scenario: s.name.clone(),
                    reason: format!(
                        "{} rabbitmq host(s): a node crash needs 3 or more (the quorum queue keeps its majority with one down) and [vips] rabbitmq",
                        other.as_ref().map(|r| r.members.len()).unwrap_or(0)
                    ),
                }),
            },
            Service::Kubernetes => match &self.k8s {
                Some(k) if k.members.len() >= MIN_K8S_MASTERS => {
                    Ok(Arc::new(K8sService::new(k.clone())))
                }
                other => Err(FaultError::Unsupported {
                    scenario: s.name.clone(),
                    reason: format!(
                        "{} k8s-master host(s): a master crash needs {MIN_K8S_MASTERS} or more (etcd keeps its quorum with one down) and [vips] k8s_api",
                        other.as_ref().map(|k| k.members.len()).unwrap_or(0)
                    ),
                }),
            },
            Service::Mariadb => match &self.galera {
                Some(g) if g.members.len() >= MIN_GALERA_NODES => {
                    Ok(Arc::new(GaleraService { t: g.clone() }))
                }
                other => Err(FaultError::Unsupported {
                    scenario: s.name.clone(),
                    reason: format!(
                        "{} mariadb host(s) behind [vips] mariadb: a node crash needs {MIN_GALERA_NODES} or more (two keep a Primary component with one down)",
                        other.as_ref().map(|g| g.members.len()).unwrap_or(0)
                    ),
                }),
            },
        }
    }

    /// Every host of the target once (PostgreSQL, Redis, Kubernetes master, Galera, RabbitMQ
    /// and lb members), in that order.
    pub fn hosts(&self) -> Vec<Member> {
        let mut out: Vec<Member> = Vec::new();
        let redis = self.redis.iter().flat_map(|r| r.members.iter());
        let k8s = self.k8s.iter().flat_map(|k| k.members.iter());
        let galera = self.galera.iter().flat_map(|g| g.members.iter());
        let rabbit = self.rabbitmq.iter().flat_map(|r| r.members.iter());
        for m in self
            .members
            .iter()
            .chain(redis)
            .chain(k8s)
            .chain(galera)
            .chain(rabbit)
            .chain(self.lbs.iter())
        {
            if !out.iter().any(|o| o.host.hostname == m.host.hostname) {
                out.push(m.clone());
            }
        }
        out
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// The service written to (`postgres`, `redis`).
    #[serde(default)]
    pub service: String,
    /// Run number (1-based).
    pub run: u32,
    /// The member hit.
    pub victim: String,
    /// The leader before the fault (Patroni leader, Redis master).
    pub leader_before: String,
    /// The leader at the end.
    pub leader_after: String,
    /// Acknowledged, lost, unexpected, through the VIP at the end.
    pub vip: Verdict,
    /// Lost acknowledged ids on each member's own copy.
    pub lost_on_member: BTreeMap<String, u64>,
    /// Seconds from the fault until the survivors name another leader (a survivor's Patroni
    /// another running leader; every surviving Sentinel the same new master).
    pub new_leader_secs: Option<f64>,
    /// Seconds from the fault until writes resumed: the acknowledgement that ended the
    /// longest gap (`None` when writes never resumed).
    pub writes_resumed_secs: Option<f64>,
    /// The longest time without an acknowledged write, from the fault until the end.
    pub max_write_gap_secs: f64,
    /// Seconds from the heal until the cluster is healthy with the victim back (a streaming
    /// replica, or the leader again if it kept the lead).
    pub victim_streaming_secs: Option<f64>,
    /// Replicas streaming at the end.
    pub replicas_streaming: u32,
    /// Seconds each member took, after the writers stopped, to replay up to the primary's
    /// last WAL position (absent: it did not within two minutes; its read-back then counts
    /// what it had).
    #[serde(default)]
    pub caught_up_secs: BTreeMap<String, f64>,
    /// When each lost write was acknowledged, in seconds relative to the fault (negative:
    /// before it), sorted; what Redis's loss budget is judged on.
    #[serde(default)]
    pub lost_ack_offsets: Vec<f64>,
    /// The lb host holding the PostgreSQL VIP before the fault (VIP scenarios).
    #[serde(default)]
    pub vip_holder_before: Option<String>,
    /// Seconds from the moment the fault held (the holder's HAProxy stopped, its power off)
    /// until another lb host held the PostgreSQL VIP (VIP scenarios; `None`: no survivor
    /// took it).
    #[serde(default)]
    pub vip_moved_secs: Option<f64>,
    /// Two members answered as writable primaries in the same sample (PostgreSQL: not in
    /// recovery; Redis: a master with its `min-replicas-to-write` replicas online).
    pub two_primaries_seen: bool,
    /// Acknowledgements by server address after the fault began.
    pub acks_after_fault_by_server: BTreeMap<String, u64>,
    /// Failed write attempts by error.
    pub write_errors: BTreeMap<String, u64>,
    /// Why the run did not complete, if it did not.
    pub error: Option<String>,
}

impl RunReport {
    /// No acknowledged write lost anywhere, the cluster healthy again, the run complete.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.vip.lost == 0
            && self.lost_on_member.values().all(|l| *l == 0)
            && self.victim_streaming_secs.is_some()
    }
}

/// Figures over several runs of one scenario.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Scenario.
    pub scenario: String,
    /// Runs.
    pub runs: u32,
    /// Runs that passed ([`RunReport::passed`]).
    pub passed: u32,
    /// Acknowledged writes, all runs.
    pub acked: u64,
    /// Lost acknowledged writes through the VIP, all runs.
    pub lost: u64,
    /// Lost on any member's copy, all runs (sum of each run's worst member).
    pub lost_on_members: u64,
    /// Present but never acknowledged, all runs.
    pub unexpected: u64,
    /// Median and max of the longest write gap (s).
    pub write_gap_median: f64,
    /// Max of the longest write gap (s).
    pub write_gap_max: f64,
    /// Median seconds to a new Patroni leader (runs that had one).
    pub new_leader_median: Option<f64>,
    /// Max seconds to a new Patroni leader.
    pub new_leader_max: Option<f64>,
    /// Median seconds from the heal to healthy with the victim streaming.
    pub victim_back_median: Option<f64>,
    /// Runs in which two primaries answered at once.
    pub two_primaries_runs: u32,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Summary {
    /// The figures of `runs` (all of one scenario).
    pub fn of(runs: &[RunReport]) -> Summary {
        let gaps: Vec<f64> = runs.iter().map(|r| r.max_write_gap_secs).collect();
        let leaders: Vec<f64> = runs.iter().filter_map(|r| r.new_leader_secs).collect();
        Summary {
            scenario: runs.first().map(|r| r.scenario.clone()).unwrap_or_default(),
            runs: runs.len() as u32,
            passed: runs.iter().filter(|r| r.passed()).count() as u32,
            acked: runs.iter().map(|r| r.vip.acked).sum(),
            lost: runs.iter().map(|r| r.vip.lost).sum(),
            lost_on_members: runs
                .iter()
                .map(|r| {
                    r.lost_on_member
                        .values()
                        .copied()
                        .filter(|l| *l != u64::MAX)
                        .max()
                        .unwrap_or(0)
                })
                .sum(),
            unexpected: runs.iter().map(|r| r.vip.unexpected).sum(),
            write_gap_median: median(gaps.clone()).unwrap_or(0.0),
            write_gap_max: gaps.iter().copied().fold(0.0, f64::max),
            new_leader_median: median(leaders.clone()),
            new_leader_max: leaders.iter().copied().reduce(f64::max),
            victim_back_median: median(
                runs.iter()
                    .filter_map(|r| r.victim_streaming_secs)
                    .collect(),
            ),
            two_primaries_runs: runs.iter().filter(|r| r.two_primaries_seen).count() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_found_by_its_name_and_unknown_names_list_them() {
        for s in Scenario::all() {
            assert_eq!(Scenario::named(&s.name).expect("known"), s);
        }
        let e = Scenario::named("nope").expect_err("unknown");
        assert!(e.to_string().contains("postgres-leader-partition"), "{e}");
        assert_eq!(kbz_errors::HasCode::code(&e), kbz_errors::Code::E010);
    }

    #[test]
    fn the_summary_adds_up_and_takes_medians() {
        let run = |lost, gap, leader: Option<f64>| RunReport {
            scenario: "x".into(),
            vip: Verdict {
                acked: 100,
                lost,
                unexpected: 1,
                lost_sample: vec![],
            },
            max_write_gap_secs: gap,
            new_leader_secs: leader,
            victim_streaming_secs: Some(10.0),
            ..RunReport::default()
        };
        let s = Summary::of(&[
            run(0, 10.0, Some(20.0)),
            run(3, 30.0, None),
            run(0, 20.0, Some(22.0)),
        ]);
        assert_eq!(
            (s.runs, s.passed, s.acked, s.lost, s.unexpected),
            (3, 2, 300, 3, 3)
        );
        assert_eq!(s.write_gap_median, 20.0);
        assert_eq!(s.write_gap_max, 30.0);
        assert_eq!(s.new_leader_median, Some(21.0));
        assert_eq!(s.new_leader_max, Some(22.0));
        // The report is the JSON other tools read.
        let j = serde_json::to_value(run(0, 1.0, None)).expect("json");
        assert_eq!(j["vip"]["lost"], 0);
    }
}
