//! Cluster steps, readiness and health: everything that talks to running daemons. The
//! decisions themselves are pure (see [`crate::observe`]); this module gathers state, acts on
//! the decisions and waits for real readiness with [`kbz_core::wait::until_ok`].

use kbz_core::component::{
    ClusterChange, ClusterChangeKind, ComponentError, HealthCheck, HostExec,
};
use kbz_core::health::{HealthRaw, HealthStatus, CLUSTER};
use kbz_core::{wait, Cmd, Context, Host, Role};
use kbz_errors::Code;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::layout::Layout;
use crate::observe::{
    self, choose_master, ckquorum_ok, describe_replication, replication_action, sentinel_action,
    MasterChoice, MasterSource, NodeRole, NodeView, ReplicationAction, SentinelAction,
    SentinelView,
};
use crate::{scripts, sentinel_params, MASTER_NAME};

/// How often readiness checks poll.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a cluster step did (empty lists on a converged cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvergeOutcome {
    /// The master after the step.
    pub master: IpAddr,
    /// Why that node.
    pub source: MasterSource,
    /// Hosts told to replicate from the master.
    pub replicaof: Vec<String>,
    /// Hosts whose Sentinel started monitoring.
    pub monitored: Vec<String>,
    /// Hosts whose Sentinel parameters were corrected.
    pub corrected: Vec<String>,
    /// One line per action taken, with the state that caused it.
    pub details: Vec<String>,
    /// Every action taken, as the run report counts them.
    pub changes: Vec<ClusterChange>,
}

/// An E-coded failure of a cluster step, on a host when one is to blame.
fn failure(code: Code, msg: String, host: Option<&str>, hint: &str) -> ComponentError {
    ComponentError::Cluster {
        code,
        message: msg,
        host: host.map(String::from),
        hint: Some(hint.into()),
    }
}

const HINT_SENTINEL: &str =
    "ask each Sentinel, with the password from .kbz/secrets.toml typed at the prompt: \
     `read -rs REDISCLI_AUTH && export REDISCLI_AUTH && redis-cli -p 26379 SENTINEL CKQUORUM kbz`; \
     see `kbz-install explain E039`";
const HINT_REPLICATION: &str = "check each node, with the password typed at the prompt: \
     `read -rs REDISCLI_AUTH && export REDISCLI_AUTH && redis-cli INFO replication`; \
     see `kbz-install explain E038`";

/// Turns a readiness timeout into the component's own E-code, keeping the detail.
fn recode(e: ComponentError, code: Code, host: &str, hint: &str) -> ComponentError {
    match e {
        ComponentError::Readiness { what, secs } => failure(
            code,
            format!("timed out after {secs}s waiting for {what}"),
            Some(host),
            hint,
        ),
        other => other,
    }
}

fn readiness(ctx: &Context) -> Duration {
    Duration::from_secs(ctx.config.timeouts.readiness)
}

/// Waits until the local Redis and Sentinel answer PING.
pub async fn wait_ping(
    ctx: &Context,
    hx: &HostExec,
    layout: &Layout,
) -> Result<(), ComponentError> {
    wait::until_ok(
        hx.exec.as_ref(),
        &scripts::ping(layout, &hx.host),
        "Redis and Sentinel to answer PING",
        readiness(ctx),
        POLL_INTERVAL,
    )
    .await
    .map(|_| ())
}

/// One round trip per host, all hosts at once, results in host order.
pub async fn gather(hosts: &[HostExec], layout: &Layout) -> Result<Vec<NodeView>, ComponentError> {
    let mut set = tokio::task::JoinSet::new();
    for (i, hx) in hosts.iter().enumerate() {
        let exec = hx.exec.clone();
        let host = hx.host.clone();
        let script = scripts::gather(layout, &host);
        set.spawn(async move {
            let out = exec.run(&Cmd::new(script)).await;
            (i, host, out)
        });
    }
    let mut views = Vec::with_capacity(hosts.len());
    while let Some(j) = set.join_next().await {
        let (i, host, out) = j.map_err(|e| ComponentError::Bootstrap {
            component: "redis".into(),
            reason: format!("state query task failed: {e}"),
        })?;
        let out = out?;
        views.push((
            i,
            observe::parse_gather(&host.hostname, host.ip, &out.stdout_str()),
        ));
    }
    views.sort_by_key(|(i, _)| *i);
    Ok(views.into_iter().map(|(_, v)| v).collect())
}

fn inventory_ips(hosts: &[HostExec]) -> Vec<IpAddr> {
    hosts.iter().map(|h| h.host.ip).collect()
}

/// The first Redis host of the inventory: the master of a fresh cluster.
fn bootstrap_ip(ctx: &Context, hosts: &[HostExec]) -> Option<IpAddr> {
    ctx.inventory
        .with_role(Role::Redis)
        .first()
        .map(|h| h.ip)
        .or_else(|| hosts.first().map(|h| h.host.ip))
}

/// Gathers until a master can be chosen; a transient disagreement (a failover in progress) is
/// polled until the readiness timeout.
async fn settle(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<(Vec<NodeView>, MasterChoice), ComponentError> {
    let bootstrap = bootstrap_ip(ctx, hosts).ok_or_else(|| ComponentError::Bootstrap {
        component: "redis".into(),
        reason: "no host has the redis role".into(),
    })?;
    let inventory = inventory_ips(hosts);
    let deadline = Instant::now() + readiness(ctx);
    loop {
        let views = gather(hosts, layout).await?;
        match choose_master(&views, bootstrap, &inventory) {
            Ok(c) => return Ok((views, c)),
            Err(u) if u.transient && Instant::now() + POLL_INTERVAL < deadline => {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(u) => {
                let hint = if u.code == Code::E039 {
                    HINT_SENTINEL
                } else {
                    HINT_REPLICATION
                };
                return Err(failure(u.code, u.reason, None, hint));
            }
        }
    }
}

async fn run_checked(hx: &HostExec, script: String, what: &str) -> Result<String, ComponentError> {
    let out = hx.exec.run(&Cmd::new(script)).await?;
    kbz_core::executor::check(hx.exec.name(), &out, what)?;
    Ok(out.stdout_str())
}

/// The cluster step: bootstrap replication on a fresh cluster, make fresh Sentinels monitor
/// the current master, correct drifted Sentinel parameters, then wait until every replica
/// streams from the master (E038) and every Sentinel names it and passes CKQUORUM (E039).
///
/// On a converged cluster it only reads. It never tells a node that is already a replica, or
/// a master with replicas, to change: after a failover, Sentinel's master stays the master.
pub async fn converge(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<ConvergeOutcome, ComponentError> {
    if hosts.is_empty() {
        return Err(ComponentError::Bootstrap {
            component: "redis".into(),
            reason: "no Redis host is connected".into(),
        });
    }
    // Every daemon answers before anything is decided.
    let mut set = tokio::task::JoinSet::new();
    for hx in hosts {
        let (hx, ctx, layout) = (hx.clone(), ctx.clone(), layout.clone());
        set.spawn(async move { wait_ping(&ctx, &hx, &layout).await });
    }
    while let Some(j) = set.join_next().await {
        j.map_err(|e| ComponentError::Bootstrap {
            component: "redis".into(),
            reason: format!("readiness task failed: {e}"),
        })??;
    }

    let (views, choice) = settle(ctx, hosts, layout).await?;
    let master = choice.ip;
    let mut outcome = ConvergeOutcome {
        master,
        source: choice.source,
        replicaof: Vec::new(),
        monitored: Vec::new(),
        corrected: Vec::new(),
        details: Vec::new(),
        changes: Vec::new(),
    };
    for (hx, v) in hosts.iter().zip(&views) {
        match replication_action(v, master) {
            ReplicationAction::Keep => {}
            ReplicationAction::ReplicaOf(m) => {
                run_checked(
                    hx,
                    scripts::replicaof(layout, &hx.host, m),
                    "make Redis a replica",
                )
                .await
                .map_err(|e| {
                    failure(
                        Code::E038,
                        format!("Redis could not be made a replica of {m}: {e}"),
                        Some(&hx.host.hostname),
                        HINT_REPLICATION,
                    )
                })?;
                outcome.replicaof.push(hx.host.hostname.clone());
                outcome.details.push(format!(
                    "{}: replicaof {m} (saw {})",
                    hx.host.hostname,
                    describe_replication(&v.redis)
                ));
                outcome.changes.push(ClusterChange::new(
                    ClusterChangeKind::ReplicaOf,
                    &hx.host.hostname,
                    format!("REPLICAOF {m} (was {})", describe_replication(&v.redis)),
                ));
            }
            ReplicationAction::SplitBrain => {
                return Err(failure(
                    Code::E038,
                    format!(
                        "{} is a master with replicas of its own while {master} is the master: \
                         two masters; kbz does not pick a winner",
                        hx.host.ip
                    ),
                    Some(&hx.host.hostname),
                    HINT_REPLICATION,
                ));
            }
        }
    }
    let want = sentinel_params(hosts.len());
    for (hx, v) in hosts.iter().zip(&views) {
        match sentinel_action(&v.sentinel, master, &want) {
            SentinelAction::Keep => {}
            SentinelAction::Monitor(m) => {
                run_checked(
                    hx,
                    scripts::monitor(layout, &hx.host, m, &want),
                    "make Sentinel monitor the master",
                )
                .await
                .map_err(|e| {
                    failure(
                        Code::E039,
                        format!("Sentinel could not start monitoring {m}: {e}"),
                        Some(&hx.host.hostname),
                        HINT_SENTINEL,
                    )
                })?;
                outcome.monitored.push(hx.host.hostname.clone());
                outcome.changes.push(ClusterChange::new(
                    ClusterChangeKind::SentinelMonitor,
                    &hx.host.hostname,
                    format!("SENTINEL MONITOR {MASTER_NAME} {m} (was {})", v.sentinel),
                ));
            }
            SentinelAction::Set { params, auth_pass } => {
                run_checked(
                    hx,
                    scripts::sentinel_set(layout, &hx.host, &params, auth_pass),
                    "correct Sentinel parameters",
                )
                .await
                .map_err(|e| {
                    failure(
                        Code::E039,
                        format!("Sentinel parameters could not be corrected: {e}"),
                        Some(&hx.host.hostname),
                        HINT_SENTINEL,
                    )
                })?;
                outcome.corrected.push(hx.host.hostname.clone());
                let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let pairs = pairs.join(" ");
                outcome.changes.push(ClusterChange::new(
                    ClusterChangeKind::SentinelSet,
                    &hx.host.hostname,
                    format!("SENTINEL SET {MASTER_NAME} {pairs}"),
                ));
                outcome.details.push(format!(
                    "{}: sentinel set {pairs} auth-pass={auth_pass} (saw {})",
                    hx.host.hostname, v.sentinel
                ));
            }
        }
    }

    let runner = hosts
        .iter()
        .find(|h| h.host.ip == master)
        .unwrap_or(&hosts[0]);
    let replicas: Vec<IpAddr> = hosts
        .iter()
        .map(|h| h.host.ip)
        .filter(|ip| *ip != master)
        .collect();
    wait::until_ok(
        runner.exec.as_ref(),
        &scripts::wait_replication(layout, &runner.host, master, &replicas),
        &format!("every replica to stream from master {master}"),
        readiness(ctx),
        POLL_INTERVAL,
    )
    .await
    .map_err(|e| recode(e, Code::E038, &runner.host.hostname, HINT_REPLICATION))?;
    wait::until_ok(
        runner.exec.as_ref(),
        &scripts::wait_sentinels(layout, &runner.host, master, &inventory_ips(hosts)),
        &format!("every Sentinel to name master {master} and pass SENTINEL CKQUORUM {MASTER_NAME}"),
        readiness(ctx),
        POLL_INTERVAL,
    )
    .await
    .map_err(|e| recode(e, Code::E039, &runner.host.hostname, HINT_SENTINEL))?;
    Ok(outcome)
}

/// After a rolling change of one host: its Redis and Sentinel answer again.
pub async fn host_ready(
    ctx: &Context,
    hx: &HostExec,
    changed: bool,
    layout: &Layout,
) -> Result<(), ComponentError> {
    if !changed {
        return Ok(());
    }
    wait_ping(ctx, hx, layout).await
}

/// Health: per host, the node's replication role and link, and its Sentinel's agreement
/// (degraded when wrong); for the cluster, a master the Sentinels name that answers as
/// master (down otherwise). Judged from each host's [`scripts::gather`] answer.
pub fn health_checks(ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let hosts: Vec<&Host> = raw.hosts().collect();
    let Some(first) = hosts.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut views = Vec::new();
    for h in &hosts {
        match raw.get(&h.hostname, "gather") {
            Ok(o) => views.push(observe::parse_gather(&h.hostname, h.ip, &o.text)),
            Err(reason) => out.push(HealthCheck::failing(
                HealthStatus::Degraded,
                "redis",
                &h.hostname,
                "redis node",
                format!("not asked: {reason}"),
                Code::E040,
                FIX_NODE,
            )),
        }
    }
    let n = hosts.len();
    let bootstrap = ctx
        .inventory
        .with_role(Role::Redis)
        .first()
        .map(|h| h.ip)
        .unwrap_or(first.ip);
    let ips: Vec<IpAddr> = hosts.iter().map(|h| h.ip).collect();
    let chosen = choose_master(&views, bootstrap, &ips);
    let master = match &chosen {
        Ok(c) if c.source == MasterSource::Sentinels => Some(c.ip),
        _ => None,
    };
    let no_master = match &chosen {
        Ok(_) => "E039 no Sentinel monitors the cluster".to_string(),
        Err(u) => format!("{} {}", u.code, u.reason),
    };
    for v in &views {
        let (ok, detail) = node_check(v, master, &no_master, n);
        out.push(coded(ok, &v.host, "redis node", detail, FIX_NODE));
        let (ok, detail) = sentinel_check(v, master, &no_master, n);
        out.push(coded(
            ok,
            &v.host,
            "sentinel",
            detail,
            "`journalctl -u redis-sentinel` on the host; every Sentinel must reach the others on port 26379 and agree on one master",
        ));
    }
    let serving = master.and_then(|m| {
        views
            .iter()
            .find(|v| v.ip == m && matches!(&v.redis, Ok(r) if r.role == NodeRole::Master))
    });
    let mut c = coded(
        serving.is_some(),
        serving.map(|v| v.host.as_str()).unwrap_or(CLUSTER),
        "one master",
        match (master, serving) {
            (Some(_), Some(v)) => format!("master {} ({}), named by the Sentinels", v.host, v.ip),
            (Some(m), None) => format!("E039 the Sentinels name {m}, which does not answer as master"),
            (None, _) => no_master.clone(),
        },
        "Sentinel promotes a replica when a quorum of Sentinels agree the master is gone: see the sentinel rows",
    );
    if c.status != HealthStatus::Ok {
        c.status = HealthStatus::Down;
    }
    out.push(c);
    out
}

/// [`health_checks`] with the probes of `layout`, one round trip per host (tests and tools
/// that run Redis on other ports).
pub async fn health(ctx: &Context, hosts: &[HostExec], layout: &Layout) -> Vec<HealthCheck> {
    let answers = kbz_core::health_run::answers(hosts, "redis", |h| {
        vec![kbz_core::health::Probe::new(
            "gather",
            scripts::gather(layout, h),
        )]
    })
    .await;
    health_checks(ctx, &HealthRaw::new("redis", &answers))
}

const FIX_NODE: &str = "`systemctl status redis-server` and `journalctl -u redis-server` on the host; a replica re-links by itself once its master answers";

/// A check from a detail that may start with its code (`E038 ...`); failures are degraded.
fn coded(ok: bool, host: &str, check: &str, detail: String, fix: &str) -> HealthCheck {
    let (code, rest) = match detail.split_once(' ') {
        Some((c, rest)) if c.len() == 4 && c.starts_with('E') => (
            c[1..].parse().ok().and_then(Code::from_number),
            rest.to_string(),
        ),
        _ => (None, detail.clone()),
    };
    HealthCheck::verdict(
        ok,
        HealthStatus::Degraded,
        "redis",
        host,
        check,
        if ok { detail } else { rest },
        code.unwrap_or(Code::E040),
        fix,
    )
}

fn node_check(v: &NodeView, master: Option<IpAddr>, no_master: &str, n: usize) -> (bool, String) {
    let (ok, detail) = match (&v.redis, master) {
        (Err(t), _) => (false, format!("E040 Redis does not answer: {t}")),
        (Ok(_), None) => (false, no_master.to_string()),
        (Ok(r), Some(m)) => match r.role {
            NodeRole::Master if v.ip != m => (
                false,
                format!("E038 a second master: the Sentinels name {m}"),
            ),
            NodeRole::Master if r.online_replicas.len() + 1 < n => (
                false,
                format!(
                    "E038 master with {} of {} replicas online",
                    r.online_replicas.len(),
                    n - 1
                ),
            ),
            NodeRole::Master => (
                true,
                format!("master, {} replica(s) online", r.online_replicas.len()),
            ),
            NodeRole::Replica if r.master_host != Some(m) => (
                false,
                format!(
                    "E038 replica of {} but the Sentinels name {m}",
                    r.master_host
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "?".into())
                ),
            ),
            NodeRole::Replica if !r.link_up => {
                (false, format!("E038 replica of {m}, link to master down"))
            }
            NodeRole::Replica => (true, format!("replica of {m}, link up")),
        },
    };
    (ok, detail)
}

fn sentinel_check(
    v: &NodeView,
    master: Option<IpAddr>,
    no_master: &str,
    n: usize,
) -> (bool, String) {
    let (ok, detail) = match (&v.sentinel, master) {
        (SentinelView::Unreachable(t), _) => (false, format!("E040 Sentinel does not answer: {t}")),
        (SentinelView::NotMonitoring, _) => (
            false,
            format!("E039 this Sentinel does not monitor `{MASTER_NAME}`"),
        ),
        (SentinelView::Monitoring(_), None) => (false, no_master.to_string()),
        (SentinelView::Monitoring(s), Some(m)) if s.ip != m => (
            false,
            format!("E039 names master {} while the majority names {m}", s.ip),
        ),
        (SentinelView::Monitoring(_), Some(_)) if !ckquorum_ok(&v.ckquorum) => (
            false,
            format!(
                "E039 CKQUORUM: {}",
                v.ckquorum.lines().next().unwrap_or("no answer")
            ),
        ),
        (SentinelView::Monitoring(s), Some(_)) if (s.num_other_sentinels as usize) + 1 < n => (
            false,
            format!(
                "E039 knows {} of {} other Sentinels",
                s.num_other_sentinels,
                n - 1
            ),
        ),
        (SentinelView::Monitoring(s), Some(m)) => (
            true,
            format!(
                "master {m}, {} replica(s) and {} other Sentinel(s) known, quorum OK",
                s.num_replicas, s.num_other_sentinels
            ),
        ),
    };
    (ok, detail)
}
