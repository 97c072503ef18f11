//! One run of one scenario: wait for a healthy service, pick the victim by role, start the
//! writers, apply the fault (watching for a new leader, two writable primaries and, for VIP
//! scenarios, the VIP moving), heal, wait for healthy again, read every acknowledged write
//! back through the VIP and from every member, and measure.

use crate::check::{acks_by_server, longest_gap, lost_ids, verdict};
use crate::fault::{self, Fault, HostCommands};
use crate::observe::{self, Member};
use crate::scenario::{RunReport, Scenario, Target, Timing, VictimRole};
use crate::service::ServiceTarget;
use crate::workload::Workload;
use crate::FaultError;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a member may take to catch up with the leader before its copy is read.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(120);

/// How long the scratch setup through the VIP is retried before a run counts as failed.
const PREPARE_WITHIN: Duration = Duration::from_secs(30);

/// Polls `svc`'s healthy rule until `stable` consecutive good samples (2 s apart) name the
/// same leader, or `within` elapses. Returns the leader.
pub async fn wait_healthy(
    svc: &dyn ServiceTarget,
    within: Duration,
    stable: u32,
) -> Result<String, FaultError> {
    let start = Instant::now();
    let mut good = 0;
    let mut last = String::new();
    loop {
        match svc.healthy().await {
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
                what: format!(
                    "a healthy {} (one leader, every replica following it)",
                    svc.name()
                ),
                secs: within.as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Who the scenario's victim is right now.
async fn pick_victim(
    s: &Scenario,
    t: &Target,
    svc: &dyn ServiceTarget,
    leader: &str,
) -> Result<String, FaultError> {
    let none = |reason: &str| FaultError::Unsupported {
        scenario: s.name.clone(),
        reason: reason.into(),
    };
    match s.victim {
        VictimRole::PostgresLeader
        | VictimRole::RedisMaster
        | VictimRole::K8sMaster
        | VictimRole::GaleraWriter
        | VictimRole::RabbitmqLeader => Ok(leader.to_string()),
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
                .ok_or_else(|| none("no replica"))
        }
        VictimRole::EtcdLeader => observe::etcd_leader(svc.members())
            .await
            .ok_or_else(|| none("no etcd member says it is the leader")),
        VictimRole::VipHolder => {
            if t.lbs.len() < 2 {
                return Err(none("the VIP can only move with 2 or more lb hosts"));
            }
            let held = observe::vip_holders(&t.lbs, t.postgres(s)?.addr).await;
            match held.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(none("no lb host holds the PostgreSQL VIP")),
                many => Err(none(&format!(
                    "the PostgreSQL VIP is held by {} at once",
                    many.join(" and ")
                ))),
            }
        }
    }
}

/// What the monitor saw while the fault lasted.
#[derive(Debug, Default)]
struct Seen {
    new_leader_at: Option<Instant>,
    vip_moved_at: Option<Instant>,
    two_primaries: bool,
}

/// Polls the survivors for a new leader, every member for two writable primaries at once,
/// and (VIP scenarios) the surviving lb hosts for the VIP, until `stop`.
fn monitor(
    svc: Arc<dyn ServiceTarget>,
    vip_watch: Option<(Vec<Member>, IpAddr)>,
    victim: &str,
    leader_before: &str,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (victim, before, out) = (victim.to_string(), leader_before.to_string(), seen.clone());
    let h = tokio::spawn(async move {
        // The VIP is watched on its own, every 200 ms: the leader and primary probes below
        // take a second or more per round, too coarse for a budget of a few seconds.
        let vip_task = vip_watch.map(|(lbs, vip)| {
            let (stop, out) = (stop.clone(), out.clone());
            let survivors: Vec<Member> = lbs
                .into_iter()
                .filter(|m| m.host.hostname != victim)
                .collect();
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if !observe::vip_holders(&survivors, vip).await.is_empty() {
                        if let Ok(mut s) = out.lock() {
                            s.vip_moved_at.get_or_insert_with(Instant::now);
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        while !stop.load(Ordering::SeqCst) {
            let lead = svc.leader(&victim).await;
            let mut probes = tokio::task::JoinSet::new();
            for m in svc.members().to_vec() {
                let svc = svc.clone();
                probes.spawn(async move { svc.writable(&m).await });
            }
            let mut primaries = 0;
            while let Some(r) = probes.join_next().await {
                if let Ok(Some(true)) = r {
                    primaries += 1;
                }
            }
            if let Ok(mut s) = out.lock() {
                if s.new_leader_at.is_none() && lead.as_ref().is_some_and(|l| *l != before) {
                    s.new_leader_at = Some(Instant::now());
                }
                if primaries >= 2 {
                    s.two_primaries = true;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(t) = vip_task {
            let _ = t.await;
        }
    });
    (seen, h)
}

/// A task that ends with its run, also when the run is dropped (interrupted).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
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
    let svc = t.service(s)?;
    r.service = svc.name().to_string();
    r.leader_before =
        wait_healthy(svc.as_ref(), timing.healthy_within, timing.stable_samples).await?;
    r.victim = pick_victim(s, t, svc.as_ref(), &r.leader_before).await?;
    if s.watches_vip() {
        r.vip_holder_before = Some(r.victim.clone());
    }
    let hosts = t.hosts();
    let victim = hosts
        .iter()
        .find(|m| m.host.hostname == r.victim)
        .cloned()
        .ok_or_else(|| FaultError::Unsupported {
            scenario: s.name.clone(),
            reason: format!("victim {} is not a member", r.victim),
        })?;
    let peers = peers(s, t, svc.as_ref(), &victim);

    // A cluster its daemons call healthy may still not route through the VIP for a few
    // seconds (HAProxy's checks, an ARP cache after the last fault's heal): retry the scratch
    // setup before calling the run failed.
    let since = Instant::now();
    loop {
        match svc.prepare().await {
            Ok(()) => break,
            Err(e) if since.elapsed() >= PREPARE_WITHIN => return Err(e),
            Err(e) => {
                tracing::info!(error = %e, "the VIP does not take the scratch setup yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    let vip_watch = if s.watches_vip() {
        Some((t.lbs.clone(), t.postgres(s)?.addr))
    } else {
        None
    };
    let load = Workload::start((0..t.writers.max(1)).map(|w| svc.writer(w)).collect());
    tokio::time::sleep(timing.before).await;
    if load.acked() == 0 {
        let tally = load.stop().await;
        return Err(FaultError::Unsupported {
            scenario: s.name.clone(),
            reason: format!(
                "no write through the {} VIP {} was acknowledged before the fault: {:?}",
                svc.name(),
                svc.vip(),
                tally.errors
            ),
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (seen, mon) = monitor(
        svc.clone(),
        vip_watch,
        &r.victim,
        &r.leader_before,
        stop.clone(),
    );
    let mut mon = AbortOnDrop(Some(mon));
    let fault_at = Instant::now();
    let fault_t = load.started().elapsed().as_secs_f64();
    tracing::info!(scenario = %s.name, victim = %r.victim, "fault");
    let in_place = std::sync::OnceLock::new();
    let healed = fault_window(s, t, &victim, &peers, timing, &in_place).await;
    let heal_at = Instant::now();
    let back = match healed {
        Ok(()) => wait_healthy(svc.as_ref(), timing.healthy_within, timing.stable_samples).await,
        Err(e) => Err(e),
    };
    if back.is_ok() {
        r.victim_streaming_secs = Some(heal_at.elapsed().as_secs_f64());
        tokio::time::sleep(timing.after).await;
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(h) = mon.0.take() {
        let _ = h.await;
    }
    let end_t = load.started().elapsed().as_secs_f64();
    let tally = load.stop().await;
    if let Ok(seen) = seen.lock() {
        r.new_leader_secs = seen
            .new_leader_at
            .map(|a| a.duration_since(fault_at).as_secs_f64());
        r.vip_moved_secs = seen
            .vip_moved_at
            // From the moment the fault held (HAProxy stopped, the power off): the VIP
            // cannot move before, and the injection itself takes a round trip or more.
            .map(|a| {
                a.duration_since(*in_place.get().unwrap_or(&fault_at))
                    .as_secs_f64()
            });
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
    // Through the VIP, then each member's own copy once it has caught up with the leader (a
    // replica back from a partition may still be behind: that is lag, not loss, and it is
    // measured apart).
    match svc.read_vip().await {
        Ok(present) => {
            r.vip = verdict(&tally, &present);
            let at: std::collections::HashMap<i64, f64> =
                tally.acks.iter().map(|a| (a.id, a.at)).collect();
            r.lost_ack_offsets = lost_ids(&tally, &present)
                .iter()
                .filter_map(|id| at.get(id))
                .map(|t| t - fault_t)
                .collect();
            r.lost_ack_offsets.sort_by(f64::total_cmp);
        }
        Err(e) if back_err.is_none() => return Err(e),
        Err(_) => {}
    }
    for m in svc.members() {
        if let Some(secs) = svc.catch_up(m, CATCH_UP_WITHIN).await {
            r.caught_up_secs.insert(m.host.hostname.clone(), secs);
        }
        // Ten tries a second apart: a member just back from a power cut may not answer its
        // first connection (seen on the lab: one connect timed out right after it caught up).
        let mut lost = None;
        let mut failed = None;
        for _ in 0..10 {
            match svc.read_member(m).await {
                Ok(ids) => {
                    let l = verdict(&tally, &ids).lost;
                    lost = Some(l);
                    failed = None;
                    // No more missing than through the VIP: the member has what the
                    // primary has, asking again cannot change it (a real loss of an
                    // asynchronous Redis took ten full reads of every member).
                    if l <= r.vip.lost {
                        break;
                    }
                }
                Err(e) if lost.is_none() => failed = Some(e),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match (lost, failed) {
            (Some(l), _) => {
                r.lost_on_member.insert(m.host.hostname.clone(), l);
            }
            (None, Some(e)) if back_err.is_none() => return Err(e),
            _ => {}
        }
    }
    if let Some(e) = back_err {
        return Err(e);
    }
    r.replicas_streaming = svc.replicas_following(&r.leader_after).await;
    Ok(())
}

/// The hosts a partition cuts the victim off from: the other members of its service (for
/// PostgreSQL and etcd, as always), and for Redis also every other host of the target, so
/// that no Sentinel, replica or HAProxy reaches the partitioned master.
fn peers(s: &Scenario, t: &Target, svc: &dyn ServiceTarget, victim: &Member) -> Vec<IpAddr> {
    let pool: Vec<Member> = match s.victim {
        VictimRole::RedisMaster | VictimRole::VipHolder => t.hosts(),
        _ => svc.members().to_vec(),
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for m in pool {
        if m.host.ip != victim.host.ip && !out.contains(&m.host.ip) {
            out.push(m.host.ip);
        }
    }
    out
}

/// Injects the fault, notes in `in_place` when it held, holds it for `timing.fault` and
/// heals it. A failed injection is undone too (it may be half applied: a unit masked, then
/// its kill failed), and its error returned.
pub(crate) async fn fault_window(
    s: &Scenario,
    t: &Target,
    victim: &Member,
    peers: &[IpAddr],
    timing: &Timing,
    in_place: &std::sync::OnceLock<Instant>,
) -> Result<(), FaultError> {
    match inject(s, t, victim, peers, timing).await {
        Ok(()) => {
            let _ = in_place.set(Instant::now());
            tokio::time::sleep(timing.fault).await;
            heal(s, t, victim).await
        }
        Err(e) => {
            if let Err(h) = heal(s, t, victim).await {
                tracing::warn!(scenario = %s.name, victim = %victim.host.hostname, error = %h, "undoing a failed injection");
            }
            Err(e)
        }
    }
}

async fn inject(
    s: &Scenario,
    t: &Target,
    victim: &Member,
    peers: &[IpAddr],
    timing: &Timing,
) -> Result<(), FaultError> {
    // Failsafes outlive the planned heal by a minute.
    let failsafe = timing.fault + Duration::from_secs(60);
    match &s.fault {
        Fault::PeerPartition => fault::partition(victim.exec.as_ref(), peers, failsafe).await,
        Fault::KillUnit { unit } => fault::kill_unit(victim.exec.as_ref(), unit).await,
        Fault::HoldDown { unit } => fault::hold_down(victim.exec.as_ref(), unit, failsafe).await,
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
        Fault::HoldDown { unit } => fault::release(victim.exec.as_ref(), unit).await,
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
