//! Cluster steps, readiness and health: everything that talks to running servers. The
//! decisions are pure (see [`crate::observe`]); this module gathers state, acts on them and
//! waits for real readiness (`wsrep_local_state_comment` Synced in a Primary component of
//! the expected size) with [`kbz_core::wait::until_ok`].
//!
//! The step, in order: a Primary component must run (a fresh cluster is bootstrapped on the
//! first inventory host with `galera_new_cluster`; when every node is down, the full-cluster
//! recovery bootstraps the node with the highest seqno after marking it safe to bootstrap);
//! the users and the database are made on it (the SST user must exist before a joiner asks
//! a donor); the other nodes join one at a time, each waited for until Synced with the
//! cluster grown; Synced nodes whose config file changed restart one at a time; at the end
//! every node is Synced in one component of every node. A converged cluster only reads.

use kbz_core::component::{ClusterChange, ClusterChangeKind, ComponentError, HostExec};
use kbz_core::health::{HealthCheck, HealthRaw, HealthStatus, CLUSTER};
use kbz_core::{wait, Cmd, Context, Host, Role};
use kbz_errors::Code;
use std::time::{Duration, Instant};

use crate::layout::Layout;
use crate::observe::{self, Candidate, NodeView, Start};
use crate::{scripts, users};

/// How often readiness checks poll.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

const HINT_CLUSTER: &str =
    "look at each node: `systemctl status mariadb`, `journalctl -u mariadb`, \
     `cat /var/lib/mysql/grastate.dat` and `mariadb -e \"SHOW STATUS LIKE 'wsrep%'\"`; \
     see `kbz-install explain E036`";
const HINT_SYNC: &str =
    "on the node: `journalctl -u mariadb` (a joiner needs an SST from a donor: \
     ports 4567, 4568 and 4444 open between the nodes, mariabackup and socat installed); \
     see `kbz-install explain E038`";

fn failure(code: Code, msg: String, host: Option<&str>, hint: &str) -> ComponentError {
    ComponentError::Cluster {
        code,
        message: msg,
        host: host.map(String::from),
        hint: Some(hint.into()),
    }
}

fn readiness(ctx: &Context) -> Duration {
    Duration::from_secs(ctx.config.timeouts.readiness)
}

/// The MariaDB members among `hosts`, in inventory order (ProxySQL-only hosts left out).
pub fn members(hosts: &[HostExec]) -> Vec<HostExec> {
    hosts
        .iter()
        .filter(|h| h.host.has(Role::Mariadb))
        .cloned()
        .collect()
}

/// One round trip per host, all hosts at once, views in host order.
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
            component: "mariadb".into(),
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

/// Gathers until no node is starting or stopping (a unit in `activating`), up to the
/// readiness timeout.
async fn settle(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<Vec<NodeView>, ComponentError> {
    let deadline = Instant::now() + readiness(ctx);
    loop {
        let views = gather(hosts, layout).await?;
        match views.iter().find(|v| v.transient()) {
            None => return Ok(views),
            Some(_) if Instant::now() + POLL_INTERVAL < deadline => {
                tokio::time::sleep(POLL_INTERVAL).await
            }
            Some(v) => {
                return Err(failure(
                    Code::E031,
                    format!(
                        "MariaDB on {} stayed `{}` for {}s",
                        v.host,
                        v.state,
                        readiness(ctx).as_secs()
                    ),
                    Some(&v.host),
                    HINT_CLUSTER,
                ))
            }
        }
    }
}

async fn run_checked(hx: &HostExec, cmd: Cmd, what: &str) -> Result<String, ComponentError> {
    let out = hx.exec.run(&cmd).await?;
    kbz_core::executor::check(hx.exec.name(), &out, what)?;
    Ok(out.stdout_str())
}

/// Waits until the node is Synced in a Primary component of at least `size` members
/// (E038 with the last answer when it is not within the readiness timeout).
pub async fn wait_synced(
    ctx: &Context,
    hx: &HostExec,
    layout: &Layout,
    size: usize,
) -> Result<(), ComponentError> {
    wait::until_ok(
        hx.exec.as_ref(),
        &scripts::wait_synced(layout, &hx.host, size),
        &format!(
            "{} to be Synced in a Primary component of {size} node(s)",
            hx.host.hostname
        ),
        readiness(ctx),
        POLL_INTERVAL,
    )
    .await
    .map(|_| ())
    .map_err(|e| match e {
        ComponentError::Readiness { what, secs } => failure(
            Code::E038,
            format!("timed out after {secs}s waiting for {what}"),
            Some(&hx.host.hostname),
            HINT_SYNC,
        ),
        other => other,
    })
}

fn by_name<'a>(hosts: &'a [HostExec], name: &str) -> Option<&'a HostExec> {
    hosts.iter().find(|h| h.host.hostname == name)
}

/// The full-cluster recovery, on nodes that are all down: each node's position (grastate.dat's
/// seqno, or recovered from InnoDB with `galera_recovery` when it says -1, as after a power
/// cut), the node with the highest seqno marked safe to bootstrap and bootstrapped. Returns
/// the node and the change. Nodes without Galera data are no candidates (they join by SST).
pub async fn recover_bootstrap(
    hosts: &[HostExec],
    views: &[NodeView],
    layout: &Layout,
) -> Result<(String, ClusterChange), ComponentError> {
    let mut candidates = Vec::new();
    for (hx, v) in hosts.iter().zip(views) {
        let Some(g) = &v.grastate else { continue };
        let (uuid, seqno) = if g.seqno >= 0 {
            (g.uuid.clone(), g.seqno)
        } else {
            let out = run_checked(
                hx,
                Cmd::new(scripts::recover(layout, &hx.host)),
                "recover the Galera position",
            )
            .await
            .map_err(|e| {
                failure(
                    Code::E036,
                    format!("cannot recover the position of {}: {e}", hx.host.hostname),
                    Some(&hx.host.hostname),
                    HINT_CLUSTER,
                )
            })?;
            observe::parse_position(&out).ok_or_else(|| {
                failure(
                    Code::E036,
                    format!(
                        "galera_recovery on {} printed no position: {}",
                        hx.host.hostname,
                        out.trim()
                    ),
                    Some(&hx.host.hostname),
                    HINT_CLUSTER,
                )
            })?
        };
        candidates.push(Candidate {
            host: hx.host.hostname.clone(),
            uuid,
            seqno,
            safe_to_bootstrap: g.safe_to_bootstrap,
        });
    }
    let chosen = observe::recovery_choice(&candidates)
        .map_err(|r| failure(r.code, r.reason, None, HINT_CLUSTER))?
        .clone();
    let hx = by_name(hosts, &chosen.host).ok_or_else(|| ComponentError::Bootstrap {
        component: "mariadb".into(),
        reason: format!("{} is not connected", chosen.host),
    })?;
    run_checked(
        hx,
        Cmd::new(scripts::bootstrap(layout, &hx.host, true)),
        "bootstrap the recovered cluster",
    )
    .await
    .map_err(|e| {
        failure(
            Code::E035,
            format!(
                "full-cluster recovery: bootstrap on {} failed: {e}",
                chosen.host
            ),
            Some(&chosen.host),
            HINT_CLUSTER,
        )
    })?;
    let seen: Vec<String> = candidates
        .iter()
        .map(|c| format!("{} seqno {}", c.host, c.seqno))
        .collect();
    Ok((
        chosen.host.clone(),
        ClusterChange::new(
            ClusterChangeKind::Bootstrap,
            &chosen.host,
            format!(
                "full-cluster recovery: every node was down; bootstrapped the highest seqno \
                 ({})",
                seen.join(", ")
            ),
        ),
    ))
}

/// The cluster step (see the module doc). `hosts` may include ProxySQL-only hosts; only
/// MariaDB members take part.
pub async fn converge(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<Vec<ClusterChange>, ComponentError> {
    let hosts = members(hosts);
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let n = hosts.len();
    let views = settle(ctx, &hosts, layout).await?;
    let start =
        observe::decide(&views).map_err(|r| failure(r.code, r.reason, None, HINT_CLUSTER))?;
    let mut changes = Vec::new();
    let mut started: Vec<String> = Vec::new();
    let first = match start {
        Start::Running(up) => up[0].clone(),
        Start::Fresh(name) => {
            let hx = by_name(&hosts, &name).unwrap_or(&hosts[0]);
            run_checked(
                hx,
                Cmd::new(scripts::bootstrap(layout, &hx.host, false)),
                "bootstrap the Galera cluster",
            )
            .await
            .map_err(|e| {
                failure(
                    Code::E035,
                    format!("bootstrap on {name} failed: {e}"),
                    Some(&name),
                    HINT_CLUSTER,
                )
            })?;
            changes.push(ClusterChange::new(
                ClusterChangeKind::Bootstrap,
                &name,
                "new cluster: galera_new_cluster on the first MariaDB host",
            ));
            started.push(name.clone());
            name
        }
        Start::AllDown => {
            let (name, change) = recover_bootstrap(&hosts, &views, layout).await?;
            changes.push(change);
            started.push(name.clone());
            name
        }
    };
    let fx = by_name(&hosts, &first).unwrap_or(&hosts[0]);
    wait_synced(ctx, fx, layout, 1).await?;

    let out = run_checked(
        fx,
        Cmd::new(scripts::users(layout, &fx.host)).stdin(users::sql(ctx)?),
        "create the users and the database",
    )
    .await
    .map_err(|e| {
        failure(
            Code::E035,
            format!(
                "cannot create the users and the database `{}` on {first}: {e}",
                ctx.config.mariadb.app_database
            ),
            Some(&first),
            HINT_CLUSTER,
        )
    })?;
    changes.extend(users::changes(&first, &out));

    let mut size = views.iter().filter(|v| v.in_primary()).count().max(1);
    for (hx, v) in hosts.iter().zip(&views) {
        if hx.host.hostname == first || v.in_primary() {
            continue;
        }
        run_checked(
            hx,
            Cmd::new(scripts::join(layout, &hx.host)),
            "start MariaDB to join the cluster",
        )
        .await
        .map_err(|e| {
            failure(
                Code::E038,
                format!("{} could not join the cluster: {e}", hx.host.hostname),
                Some(&hx.host.hostname),
                HINT_SYNC,
            )
        })?;
        size += 1;
        wait_synced(ctx, hx, layout, size).await?;
        started.push(hx.host.hostname.clone());
        changes.push(ClusterChange::new(
            ClusterChangeKind::Join,
            &hx.host.hostname,
            format!("joined the cluster (was {}), now {size} node(s)", v.state),
        ));
    }
    for (hx, v) in hosts.iter().zip(&views) {
        if !v.stale_config || started.contains(&hx.host.hostname) {
            continue;
        }
        run_checked(
            hx,
            Cmd::new(scripts::restart(layout, &hx.host)),
            "restart MariaDB to load its new configuration",
        )
        .await?;
        wait_synced(ctx, hx, layout, n).await?;
        changes.push(ClusterChange::new(
            ClusterChangeKind::Join,
            &hx.host.hostname,
            "restarted to load the changed configuration and rejoined",
        ));
    }
    for hx in &hosts {
        wait_synced(ctx, hx, layout, n).await?;
    }
    Ok(changes)
}

/// The full-cluster recovery as a function of its own (for a power-cut test): refuses with
/// E036 unless every node is down, then runs the cluster step, which recovers.
pub async fn recover_full_cluster(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<Vec<ClusterChange>, ComponentError> {
    let m = members(hosts);
    let views = settle(ctx, &m, layout).await?;
    if let Some(v) = views.iter().find(|v| v.running()) {
        return Err(failure(
            Code::E036,
            format!(
                "MariaDB still runs on {}: not a full-cluster outage",
                v.host
            ),
            Some(&v.host),
            HINT_CLUSTER,
        ));
    }
    converge(ctx, &m, layout).await
}

const FIX_NODE: &str =
    "`systemctl status mariadb` and `journalctl -u mariadb` on the host; a stopped \
     node rejoins with `systemctl start mariadb`, and when every node is down a re-run of \
     kbz-install recovers the cluster";

/// Health: per node Synced, Primary and the expected cluster size (degraded otherwise); for
/// the cluster, a Primary component whose members share one state uuid (down otherwise).
pub fn health_checks(_ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let hosts: Vec<&Host> = raw.hosts().filter(|h| h.has(Role::Mariadb)).collect();
    if hosts.is_empty() {
        return Vec::new();
    }
    let n = hosts.len();
    let mut out = Vec::new();
    let mut views = Vec::new();
    for h in &hosts {
        match raw.get(&h.hostname, "gather") {
            Ok(o) => views.push(observe::parse_gather(&h.hostname, h.ip, &o.text)),
            Err(reason) => out.push(HealthCheck::failing(
                HealthStatus::Degraded,
                "mariadb",
                &h.hostname,
                "galera node",
                format!("not asked: {reason}"),
                Code::E040,
                FIX_NODE,
            )),
        }
    }
    for v in &views {
        let (ok, code, detail) = match (&v.wsrep, v.running()) {
            (_, false) => (false, Code::E040, format!("MariaDB is {}", v.state)),
            (None, true) => (
                false,
                Code::E040,
                format!(
                    "status query failed: {}",
                    v.error.as_deref().unwrap_or("no answer")
                ),
            ),
            (Some(w), true) if w.cluster_status != "Primary" => (
                false,
                Code::E036,
                format!("not in the Primary component ({})", w.cluster_status),
            ),
            (Some(w), true) if w.local_state != 4 => (
                false,
                Code::E038,
                format!("{} (not Synced)", w.state_comment),
            ),
            (Some(w), true) if w.cluster_size != n => (
                false,
                Code::E036,
                format!("Synced, cluster size {} of {n}", w.cluster_size),
            ),
            (Some(w), true) => (
                true,
                Code::E040,
                format!(
                    "Synced, Primary, cluster size {}, last committed {}",
                    w.cluster_size, w.last_committed
                ),
            ),
        };
        let mut c = HealthCheck::verdict(
            ok,
            HealthStatus::Degraded,
            "mariadb",
            &v.host,
            "galera node",
            detail,
            code,
            FIX_NODE,
        );
        if let Some(w) = &v.wsrep {
            c = c
                .metric("wsrep_cluster_size", w.cluster_size as f64)
                .metric("wsrep_local_state", f64::from(w.local_state));
        }
        out.push(c);
    }
    let primary: Vec<&NodeView> = views.iter().filter(|v| v.in_primary()).collect();
    let uuids: std::collections::BTreeSet<&str> = primary
        .iter()
        .filter_map(|v| v.wsrep.as_ref().map(|w| w.state_uuid.as_str()))
        .collect();
    let (ok, code, detail) = if primary.is_empty() {
        (
            false,
            Code::E036,
            "no node is in a Primary component: the cluster takes no writes".to_string(),
        )
    } else if uuids.len() > 1 {
        (
            false,
            Code::E036,
            format!(
                "the nodes report different cluster state uuids: {}",
                uuids.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    } else {
        (
            true,
            Code::E040,
            format!(
                "Primary component of {} node(s), state uuid {}",
                primary.len(),
                uuids.into_iter().next().unwrap_or("")
            ),
        )
    };
    out.push(HealthCheck::verdict(
        ok,
        HealthStatus::Down,
        "mariadb",
        CLUSTER,
        "galera cluster",
        detail,
        code,
        HINT_CLUSTER,
    ));
    out
}
