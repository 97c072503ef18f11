//! Cluster steps, readiness and the rolling-restart gate: everything that talks to running
//! nodes. The decisions are pure (see [`crate::observe`]); this module gathers state, acts
//! and waits for real readiness.

use kbz_core::component::{ClusterChange, ClusterChangeKind, ComponentError, HostExec};
use kbz_core::{Cmd, Context, ExecError, Host, Output};
use kbz_errors::Code;
use std::time::{Duration, Instant};

use crate::layout::Layout;
use crate::observe::{self, AccessAction, NodeView, Observation, WantedUser};
use crate::{scripts, ADMIN_USER, SECRET_ADMIN, SECRET_APP};

/// How often readiness checks poll.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long one poll may take: each CLI call starts an Erlang VM, and a script may make
/// several (the quorum gate asks every node), which on a loaded host takes tens of seconds.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `script` on `hx` until it exits 0, at most `timeout`; a poll that fails or runs past
/// [`POLL_TIMEOUT`] is tried again. On timeout, `ComponentError::Readiness` naming `what`
/// and the last answer.
pub async fn poll(
    hx: &HostExec,
    script: &str,
    what: &str,
    timeout: Duration,
) -> Result<Output, ComponentError> {
    let start = Instant::now();
    loop {
        let last = match hx.exec.run(&Cmd::new(script).timeout(POLL_TIMEOUT)).await {
            Ok(out) if out.success() => return Ok(out),
            Ok(out) => format!("{}{}", out.stdout_str(), out.stderr_str()),
            Err(ExecError::Timeout { secs, .. }) => format!("no answer within {secs}s"),
            Err(e) => return Err(e.into()),
        };
        if start.elapsed() + POLL_INTERVAL > timeout {
            let last: String = last.trim().chars().take(300).collect();
            return Err(ComponentError::Readiness {
                what: format!("{what} on {} (last: {last})", hx.exec.name()),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

const HINT_CLUSTER: &str = "see each node's view: `sudo rabbitmqctl cluster_status`; a node \
     with another Erlang cookie cannot join (compare `sudo md5sum /var/lib/rabbitmq/.erlang.cookie` \
     on every node); see `kbz-install explain E035`";
const HINT_QUORUM: &str = "see which queues would lose their majority: `sudo rabbitmq-diagnostics \
     check_if_node_is_quorum_critical` and `sudo rabbitmq-queues quorum_status QUEUE -p VHOST`; \
     bring the stopped nodes back first; see `kbz-install explain E036`";

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

/// Every node name of `hosts`, in order.
pub fn node_names(hosts: &[HostExec], layout: &Layout) -> Vec<String> {
    hosts.iter().map(|h| layout.node(&h.host)).collect()
}

/// The users kbz manages: the admin (tag `administrator`, on `/` and the app vhost) and the
/// application user (on its vhost only).
pub fn wanted_users(ctx: &Context) -> Vec<WantedUser> {
    let c = &ctx.config.rabbitmq;
    vec![
        WantedUser {
            name: ADMIN_USER.into(),
            secret: SECRET_ADMIN.into(),
            tags: vec!["administrator".into()],
            vhosts: vec!["/".into(), c.vhost.clone()],
        },
        WantedUser {
            name: c.app_user.clone(),
            secret: SECRET_APP.into(),
            tags: Vec::new(),
            vhosts: vec![c.vhost.clone()],
        },
    ]
}

/// Waits until the node on `hx` is fully booted and running (E031 on timeout, with the
/// last answer).
pub async fn wait_running(
    ctx: &Context,
    hx: &HostExec,
    layout: &Layout,
) -> Result<(), ComponentError> {
    poll(
        hx,
        &scripts::running(layout, &hx.host),
        &format!("RabbitMQ node {} to run", layout.node(&hx.host)),
        readiness(ctx),
    )
    .await
    .map(|_| ())
}

/// The observation's expression for this context: kbz's users, their permissions, and
/// whether their passwords log in (passwords from the secrets file, hex-encoded inside the
/// expression, which travels on stdin).
fn observe_input(ctx: &Context) -> Result<Vec<u8>, ComponentError> {
    let wanted = wanted_users(ctx);
    let mut secrets = Vec::new();
    for w in &wanted {
        secrets.push((w.name.as_str(), ctx.secret(&w.secret)?));
    }
    let logins: Vec<(&str, &str)> = secrets.iter().map(|(n, s)| (*n, s.expose())).collect();
    let q = scripts::AccessQuery {
        admin: &wanted[0].name,
        app: &wanted[1].name,
        logins: &logins,
    };
    Ok(scripts::observe_expr(Some(&q)).into_bytes())
}

/// One observation per host (one `rabbitmqctl eval`, one Erlang VM), all hosts at once,
/// results in host order. A node that does not answer gives an observation with `Err`s.
pub async fn observe_all(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<Vec<Observation>, ComponentError> {
    let input = observe_input(ctx)?;
    let mut set = tokio::task::JoinSet::new();
    for (i, hx) in hosts.iter().enumerate() {
        let exec = hx.exec.clone();
        let cmd = Cmd::new(scripts::observe(layout, &hx.host))
            .stdin(input.clone())
            .timeout(POLL_TIMEOUT);
        set.spawn(async move { (i, exec.run(&cmd).await) });
    }
    let mut all = Vec::with_capacity(hosts.len());
    while let Some(j) = set.join_next().await {
        let (i, out) = j.map_err(|e| ComponentError::Bootstrap {
            component: "rabbitmq".into(),
            reason: format!("state query task failed: {e}"),
        })?;
        all.push((i, observe::parse_observation(&out?.stdout_str())));
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, o)| o).collect())
}

/// Each host's view of the cluster, from its observation.
pub fn views(hosts: &[HostExec], layout: &Layout, obs: &[Observation]) -> Vec<NodeView> {
    hosts
        .iter()
        .zip(obs)
        .map(|(hx, o)| NodeView {
            host: hx.host.hostname.clone(),
            node: layout.node(&hx.host),
            status: o.status.clone(),
        })
        .collect()
}

async fn run_checked(hx: &HostExec, cmd: Cmd, what: &str) -> Result<String, ComponentError> {
    let out = hx.exec.run(&cmd).await?;
    kbz_core::executor::check(hx.exec.name(), &out, what)?;
    Ok(out.stdout_str())
}

/// The cluster step: wait until every node runs; join each node that started alone to the
/// cluster (one at a time, each waited for); wait until every node sees every node running
/// (E035); then the vhost (default queue type quorum), kbz's users, their tags, permissions
/// and passwords, and `guest` deleted. On a converged cluster it only reads, in one
/// observation per host.
pub async fn converge(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<Vec<ClusterChange>, ComponentError> {
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let mut changes = Vec::new();
    let mut obs = observe_all(ctx, hosts, layout).await?;
    if !obs.iter().all(Observation::is_running) {
        let mut set = tokio::task::JoinSet::new();
        for hx in hosts {
            let (hx, ctx, layout) = (hx.clone(), ctx.clone(), layout.clone());
            set.spawn(async move { wait_running(&ctx, &hx, &layout).await });
        }
        while let Some(j) = set.join_next().await {
            j.map_err(|e| ComponentError::Bootstrap {
                component: "rabbitmq".into(),
                reason: format!("readiness task failed: {e}"),
            })??;
        }
        obs = observe_all(ctx, hosts, layout).await?;
    }
    let joins = observe::plan_joins(&views(hosts, layout, &obs))
        .map_err(|u| failure(u.code, u.reason, None, HINT_CLUSTER))?;
    for j in &joins {
        let Some(hx) = hosts.iter().find(|h| h.host.hostname == j.host) else {
            continue;
        };
        run_checked(
            hx,
            Cmd::new(scripts::join(layout, &hx.host, &j.node, &j.seed)),
            "join the RabbitMQ cluster",
        )
        .await
        .map_err(|e| {
            failure(
                Code::E035,
                format!("{} could not join {}: {e}", j.node, j.seed),
                Some(&hx.host.hostname),
                HINT_CLUSTER,
            )
        })?;
        wait_running(ctx, hx, layout).await?;
        changes.push(ClusterChange::new(
            ClusterChangeKind::Join,
            &hx.host.hostname,
            format!("{} joined {} (it had started alone)", j.node, j.seed),
        ));
    }
    if !joins.is_empty() || !formation_problems(hosts, layout, &obs).is_empty() {
        obs = wait_formed(ctx, hosts, layout).await?;
    }
    changes.extend(converge_access(ctx, hosts, layout, &obs).await?);
    Ok(changes)
}

/// What keeps the cluster from being formed in these observations: a node that does not see
/// every expected node running, or sees a partition (empty when formed).
pub fn formation_problems(hosts: &[HostExec], layout: &Layout, obs: &[Observation]) -> Vec<String> {
    let expected = node_names(hosts, layout);
    let mut problems = Vec::new();
    for v in views(hosts, layout, obs) {
        match &v.status {
            Ok(s) => {
                let m = observe::missing(&expected, &s.running_nodes);
                if !m.is_empty() {
                    problems.push(format!("{} does not see {} running", v.host, m.join(", ")));
                }
                if !s.partitioned.is_empty() {
                    problems.push(format!(
                        "{} sees a partition from {}",
                        v.host,
                        s.partitioned.join(", ")
                    ));
                }
            }
            Err(t) => problems.push(format!("{}: {t}", v.host)),
        }
    }
    problems
}

/// Waits until every node reports every expected node running (E035 on timeout); returns
/// the observations that showed it.
pub async fn wait_formed(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<Vec<Observation>, ComponentError> {
    let deadline = Instant::now() + readiness(ctx);
    loop {
        let obs = observe_all(ctx, hosts, layout).await?;
        let problems = formation_problems(hosts, layout, &obs);
        if problems.is_empty() {
            return Ok(obs);
        }
        if Instant::now() + POLL_INTERVAL > deadline {
            return Err(failure(
                Code::E035,
                format!(
                    "the RabbitMQ cluster did not form within {}s: {}",
                    readiness(ctx).as_secs(),
                    problems.join("; ")
                ),
                None,
                HINT_CLUSTER,
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn password_line(ctx: &Context, secret: &str) -> Result<Vec<u8>, ComponentError> {
    let s = ctx.secret(secret)?;
    Ok(format!("{}\n", s.expose()).into_bytes())
}

/// The users step on the first host, from its observation: vhost, users, tags,
/// permissions, passwords, guest.
pub async fn converge_access(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
    obs: &[Observation],
) -> Result<Vec<ClusterChange>, ComponentError> {
    let (Some(hx), Some(first)) = (hosts.first(), obs.first()) else {
        return Ok(Vec::new());
    };
    let wanted = wanted_users(ctx);
    let vhost = ctx.config.rabbitmq.vhost.clone();
    let seen = first.access.clone().map_err(|t| {
        failure(
            Code::E035,
            format!(
                "the users of {} could not be listed: {t}",
                layout.node(&hx.host)
            ),
            Some(&hx.host.hostname),
            HINT_CLUSTER,
        )
    })?;
    let actions = observe::access_actions(&seen, &vhost, &wanted, |n| {
        first.authenticated.iter().any(|a| a == n)
    });
    let mut changes = Vec::new();
    for a in actions {
        let cmd = match &a {
            AccessAction::AddVhost(v) => Cmd::new(scripts::access_change(
                layout,
                &hx.host,
                &["add_vhost", v, "--default-queue-type", "quorum"],
                false,
            )),
            AccessAction::AddUser(u) => Cmd::new(scripts::access_change(
                layout,
                &hx.host,
                &["add_user", &u.name],
                true,
            ))
            .stdin(password_line(ctx, &u.secret)?),
            AccessAction::ChangePassword(u) => Cmd::new(scripts::access_change(
                layout,
                &hx.host,
                &["change_password", &u.name],
                true,
            ))
            .stdin(password_line(ctx, &u.secret)?),
            AccessAction::SetTags(u) => {
                let mut args = vec!["set_user_tags", u.name.as_str()];
                args.extend(u.tags.iter().map(String::as_str));
                Cmd::new(scripts::access_change(layout, &hx.host, &args, false))
            }
            AccessAction::SetPermissions(u, v) => Cmd::new(scripts::access_change(
                layout,
                &hx.host,
                &[
                    "set_permissions",
                    "-p",
                    v,
                    &u.name,
                    observe::FULL,
                    observe::FULL,
                    observe::FULL,
                ],
                false,
            )),
            AccessAction::DeleteUser(n) => Cmd::new(scripts::access_change(
                layout,
                &hx.host,
                &["delete_user", n],
                false,
            )),
        };
        run_checked(hx, cmd, &a.describe()).await.map_err(|e| {
            failure(
                Code::E035,
                format!("{}: {e}", a.describe()),
                Some(&hx.host.hostname),
                HINT_CLUSTER,
            )
        })?;
        changes.push(ClusterChange::new(
            ClusterChangeKind::Create,
            &hx.host.hostname,
            a.describe(),
        ));
    }
    Ok(changes)
}

/// Waits until none of `nodes` is quorum critical, asked from `hx` (E036 on timeout).
pub async fn wait_not_quorum_critical(
    ctx: &Context,
    hx: &HostExec,
    layout: &Layout,
    nodes: &[String],
    skip_down: bool,
) -> Result<(), ComponentError> {
    poll(
        hx,
        &scripts::quorum_critical(layout, &hx.host, nodes, skip_down),
        "no RabbitMQ node to be quorum critical",
        readiness(ctx),
    )
    .await
    .map(|_| ())
    .map_err(|e| match e {
        ComponentError::Readiness { what, secs } => failure(
            Code::E036,
            format!("timed out after {secs}s waiting for {what}"),
            Some(&hx.host.hostname),
            HINT_QUORUM,
        ),
        other => other,
    })
}

/// Before a rolling change: on every host whose node runs, wait until stopping it would
/// leave every quorum queue a majority. Nodes that do not run yet (a fresh install) pass.
pub async fn before_roll(
    ctx: &Context,
    hosts: &[HostExec],
    layout: &Layout,
) -> Result<(), ComponentError> {
    for hx in hosts {
        let me = [layout.node(&hx.host)];
        wait_not_quorum_critical(ctx, hx, layout, &me, true).await?;
    }
    Ok(())
}

/// After a rolling change of one host: its node runs again, and no running node of the
/// cluster is quorum critical any more (its quorum queue replicas caught up), so the next
/// host may restart.
pub async fn host_ready(
    ctx: &Context,
    hx: &HostExec,
    layout: &Layout,
    all: &[Host],
) -> Result<(), ComponentError> {
    wait_running(ctx, hx, layout).await?;
    let nodes: Vec<String> = all.iter().map(|h| layout.node(h)).collect();
    wait_not_quorum_critical(ctx, hx, layout, &nodes, true).await
}
