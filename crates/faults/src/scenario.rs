//! Scenarios and one run of one: pick the victim by role, start the writers, apply the fault,
//! heal, wait for a healthy cluster, read every acknowledged id back, and measure.

use crate::check::{acks_by_server, longest_gap, verdict, Verdict};
use crate::fault::{self, Fault, HostCommands};
use crate::observe::{self, Member};
use crate::workload::{self, PgTarget, Workload};
use crate::FaultError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        ]
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
    /// Where the writers connect (the VIP) and with which credentials.
    pub pg: PgTarget,
    /// Commands for [`Fault::PowerCut`]; a scenario with a power cut fails without them.
    pub power: Option<HostCommands>,
    /// Commands for [`Fault::Isolate`].
    pub isolate: Option<HostCommands>,
    /// Concurrent writers.
    pub writers: usize,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Run number (1-based).
    pub run: u32,
    /// The member hit.
    pub victim: String,
    /// The Patroni leader before the fault.
    pub leader_before: String,
    /// The Patroni leader at the end.
    pub leader_after: String,
    /// Acknowledged, lost, unexpected, through the VIP at the end.
    pub vip: Verdict,
    /// Lost acknowledged ids on each member's own copy.
    pub lost_on_member: BTreeMap<String, u64>,
    /// Seconds from the fault until a survivor's Patroni names another running leader.
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
    /// Two members answered as primaries (not in recovery) in the same sample.
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

/// How long a member may take to replay the primary's last WAL before its copy is read.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(120);

/// Polls [`observe::healthy`] until `stable` consecutive good samples, or `within` elapses.
pub async fn wait_healthy(
    members: &[Member],
    within: Duration,
    stable: u32,
) -> Result<String, FaultError> {
    let start = Instant::now();
    let mut good = 0;
    let mut last = String::new();
    loop {
        match observe::healthy(members).await {
            Ok(l) if l == last || good == 0 => {
                good += 1;
                last = l;
                if good >= stable.max(1) {
                    return Ok(last);
                }
            }
            Ok(l) => {
                good = 1;
                last = l;
            }
            Err(why) => {
                good = 0;
                last = why;
            }
        }
        if start.elapsed() > within {
            return Err(FaultError::Timeout {
                what: "a healthy cluster (one leader, every replica streaming)".into(),
                secs: within.as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Who the scenario's victim is right now.
async fn pick_victim(s: &Scenario, t: &Target, leader: &str) -> Result<String, FaultError> {
    match s.victim {
        VictimRole::PostgresLeader => Ok(leader.to_string()),
        VictimRole::PostgresReplica => {
            let all: Vec<&Member> = t.members.iter().collect();
            let rows = observe::patroni_members(&all)
                .await
                .map(|(_, r)| r)
                .unwrap_or_default();
            rows.iter()
                .find(|r| r.role == "Sync Standby")
                .or_else(|| rows.iter().find(|r| r.role == "Replica"))
                .map(|r| r.member.clone())
                .ok_or_else(|| FaultError::Unsupported {
                    scenario: s.name.clone(),
                    reason: "no replica".into(),
                })
        }
        VictimRole::EtcdLeader => {
            observe::etcd_leader(&t.members)
                .await
                .ok_or_else(|| FaultError::Unsupported {
                    scenario: s.name.clone(),
                    reason: "no etcd member says it is the leader".into(),
                })
        }
    }
}

/// What the monitor saw while the fault lasted.
#[derive(Debug, Default)]
struct Seen {
    new_leader_at: Option<Instant>,
    two_primaries: bool,
}

/// Polls the survivors' Patroni (new leader) and every member's PostgreSQL (two primaries at
/// once) until `stop`.
fn monitor(
    t: &Target,
    victim: &str,
    leader_before: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (t, victim, before, out) = (
        t.clone(),
        victim.to_string(),
        leader_before.to_string(),
        seen.clone(),
    );
    let h = tokio::spawn(async move {
        let survivors: Vec<&Member> = t
            .members
            .iter()
            .filter(|m| m.host.hostname != victim)
            .collect();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let lead = observe::patroni_members(&survivors).await;
            let probes = t.members.iter().map(|m| {
                let pt = t.pg.at(m.host.ip);
                async move { workload::is_primary(&pt).await }
            });
            let primaries = futures_count(probes).await;
            if let Ok(mut s) = out.lock() {
                if s.new_leader_at.is_none() {
                    if let Some((_, rows)) = &lead {
                        if observe::leader(rows).is_some_and(|l| l.member != before) {
                            s.new_leader_at = Some(Instant::now());
                        }
                    }
                }
                if primaries >= 2 {
                    s.two_primaries = true;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    (seen, h)
}

/// How many of the probes answered `Some(true)`, run concurrently.
async fn futures_count<F>(probes: impl Iterator<Item = F>) -> usize
where
    F: std::future::Future<Output = Option<bool>> + Send + 'static,
{
    let handles: Vec<_> = probes.map(tokio::spawn).collect();
    let mut n = 0;
    for h in handles {
        if let Ok(Some(true)) = h.await {
            n += 1;
        }
    }
    n
}

/// Runs `scenario` once against `t`.
pub async fn run_once(scenario: &Scenario, t: &Target, timing: &Timing, run: u32) -> RunReport {
    let mut r = RunReport {
        scenario: scenario.name.clone(),
        run,
        ..RunReport::default()
    };
    if let Err(e) = run_inner(scenario, t, timing, &mut r).await {
        r.error = Some(format!("{} {e}", kbz_errors::HasCode::code(&e)));
    }
    r
}

async fn run_inner(
    s: &Scenario,
    t: &Target,
    timing: &Timing,
    r: &mut RunReport,
) -> Result<(), FaultError> {
    if commands(s, t).is_err() {
        return Err(FaultError::Unsupported {
            scenario: s.name.clone(),
            reason: "this fault needs its commands (power off/on or isolate/rejoin)".into(),
        });
    }
    r.leader_before =
        wait_healthy(&t.members, timing.healthy_within, timing.stable_samples).await?;
    r.victim = pick_victim(s, t, &r.leader_before).await?;
    let victim = t
        .members
        .iter()
        .find(|m| m.host.hostname == r.victim)
        .cloned()
        .ok_or_else(|| FaultError::Unsupported {
            scenario: s.name.clone(),
            reason: format!("victim {} is not a member", r.victim),
        })?;
    let peers: Vec<std::net::IpAddr> = t
        .members
        .iter()
        .filter(|m| m.host.hostname != r.victim)
        .map(|m| m.host.ip)
        .collect();

    workload::prepare(&t.pg).await?;
    let load = Workload::start(&t.pg, t.writers);
    tokio::time::sleep(timing.before).await;
    if load.acked() == 0 {
        let tally = load.stop().await;
        return Err(FaultError::Postgres {
            addr: t.pg.addr.to_string(),
            reason: format!(
                "no write was acknowledged before the fault: {:?}",
                tally.errors
            ),
        });
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen, mon) = monitor(t, &r.victim, &r.leader_before, stop.clone());
    let fault_at = Instant::now();
    let fault_t = load.started().elapsed().as_secs_f64();
    tracing::info!(scenario = %s.name, victim = %r.victim, "fault");
    let injected = inject(s, t, &victim, &peers, timing).await;
    let healed = match injected {
        Ok(()) => {
            tokio::time::sleep(timing.fault).await;
            heal(s, t, &victim).await
        }
        Err(e) => Err(e),
    };
    let heal_at = Instant::now();
    let back = match healed {
        Ok(()) => wait_back(t, &r.victim, timing).await,
        Err(e) => Err(e),
    };
    if back.is_ok() {
        r.victim_streaming_secs = Some(heal_at.elapsed().as_secs_f64());
        tokio::time::sleep(timing.after).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = mon.await;
    let end_t = load.started().elapsed().as_secs_f64();
    let tally = load.stop().await;
    if let Ok(seen) = seen.lock() {
        r.new_leader_secs = seen
            .new_leader_at
            .map(|a| a.duration_since(fault_at).as_secs_f64());
        r.two_primaries_seen = seen.two_primaries;
    }
    let (gap, end) = longest_gap(&tally.acks, fault_t, end_t);
    r.max_write_gap_secs = gap;
    r.writes_resumed_secs = end.map(|f| f - fault_t);
    r.acks_after_fault_by_server = acks_by_server(&tally.acks, fault_t);
    r.write_errors = tally.errors.clone();
    // The read-back happens even when the cluster did not heal: the figures are the point.
    let back_err = match back {
        Ok(l) => {
            r.leader_after = l;
            None
        }
        Err(e) => Some(e),
    };
    r.vip.acked = tally.acks.len() as u64;
    // Through the VIP, then each member's own copy once it has replayed everything the
    // primary wrote (a replica back from a partition may still be catching up: that is lag,
    // not loss, and it is measured apart).
    match workload::read_ids(&t.pg).await {
        Ok(present) => r.vip = verdict(&tally, &present),
        Err(e) if back_err.is_none() => return Err(e),
        Err(_) => {}
    }
    let target_lsn = workload::primary_lsn(&t.pg).await.ok();
    for m in &t.members {
        let pt = t.pg.at(m.host.ip);
        if let Some(lsn) = &target_lsn {
            let since = Instant::now();
            while since.elapsed() < CATCH_UP_WITHIN {
                if workload::replayed(&pt, lsn).await == Some(true) {
                    r.caught_up_secs
                        .insert(m.host.hostname.clone(), since.elapsed().as_secs_f64());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let mut lost = None;
        for _ in 0..10 {
            match workload::read_ids(&pt).await {
                Ok(ids) => {
                    let l = verdict(&tally, &ids).lost;
                    lost = Some(l);
                    if l == 0 {
                        break;
                    }
                }
                Err(e) if back_err.is_none() => return Err(e),
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Some(l) = lost {
            r.lost_on_member.insert(m.host.hostname.clone(), l);
        }
    }
    if let Some(e) = back_err {
        return Err(e);
    }
    let leader_after = r.leader_after.clone();
    let leader = t.members.iter().find(|m| m.host.hostname == leader_after);
    if let Some(l) = leader {
        r.replicas_streaming = observe::replication(l)
            .await
            .map(|rows| rows.iter().filter(|x| x.state == "streaming").count() as u32)
            .unwrap_or(0);
    }
    Ok(())
}

async fn inject(
    s: &Scenario,
    t: &Target,
    victim: &Member,
    peers: &[std::net::IpAddr],
    timing: &Timing,
) -> Result<(), FaultError> {
    match &s.fault {
        // The failsafe outlives the planned heal by a minute.
        Fault::PeerPartition => {
            fault::partition(
                victim.exec.as_ref(),
                peers,
                timing.fault + Duration::from_secs(60),
            )
            .await
        }
        Fault::KillUnit { unit } => fault::kill_unit(victim.exec.as_ref(), unit).await,
        Fault::Switchover => {
            let all: Vec<&Member> = t.members.iter().collect();
            let rows = observe::patroni_members(&all)
                .await
                .map(|(_, r)| r)
                .unwrap_or_default();
            let candidate = rows
                .iter()
                .find(|r| r.role == "Sync Standby")
                .or_else(|| {
                    rows.iter()
                        .find(|r| r.role == "Replica" && r.member != victim.host.hostname)
                })
                .map(|r| r.member.clone())
                .ok_or_else(|| FaultError::Unsupported {
                    scenario: s.name.clone(),
                    reason: "no replica to switch over to".into(),
                })?;
            fault::switchover(victim.exec.as_ref(), &victim.host.hostname, &candidate).await
        }
        Fault::PowerCut | Fault::Isolate => {
            let p = commands(s, t)?.ok_or_else(|| unsupported(s))?;
            fault::power(
                &HostCommands::render(&p.off, &victim.host.hostname, victim.host.ip),
                &victim.host.hostname,
            )
            .await
        }
    }
}

async fn heal(s: &Scenario, t: &Target, victim: &Member) -> Result<(), FaultError> {
    match &s.fault {
        Fault::PeerPartition => fault::heal(victim.exec.as_ref()).await,
        // systemd restarts the unit by itself; starting it is a no-op then, and brings it
        // back when the unit has no restart policy.
        Fault::KillUnit { unit } => fault::start_unit(victim.exec.as_ref(), unit).await,
        Fault::Switchover => Ok(()),
        Fault::PowerCut | Fault::Isolate => {
            let p = commands(s, t)?.ok_or_else(|| unsupported(s))?;
            fault::power(
                &HostCommands::render(&p.on, &victim.host.hostname, victim.host.ip),
                &victim.host.hostname,
            )
            .await
        }
    }
}

fn unsupported(s: &Scenario) -> FaultError {
    FaultError::Unsupported {
        scenario: s.name.clone(),
        reason: "no commands for this fault".into(),
    }
}

/// The controller commands a fault needs (`Ok(None)` for faults that need none); an error
/// when the target lacks them.
fn commands<'a>(s: &Scenario, t: &'a Target) -> Result<Option<&'a HostCommands>, FaultError> {
    let c = match s.fault {
        Fault::PowerCut => t.power.as_ref(),
        Fault::Isolate => t.isolate.as_ref(),
        _ => return Ok(None),
    };
    c.map(Some).ok_or_else(|| unsupported(s))
}

/// Waits for a healthy cluster in which the victim takes part again.
async fn wait_back(t: &Target, victim: &str, timing: &Timing) -> Result<String, FaultError> {
    let _ = victim;
    wait_healthy(&t.members, timing.healthy_within, timing.stable_samples).await
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
