//! FakeHost engine runs of module 7 on the example fleet (mq1-mq3): a fresh install writes
//! the cookie and config before the package, and the cluster step (classic_config formed
//! the cluster) creates the vhost and users and deletes guest; a converged re-run changes
//! nothing; a drifted password is reset; a cluster that never forms is E035; a config change
//! rolls one host at a time behind the quorum-critical gate (E036 when it never clears);
//! uninstall removes what install added. The cluster step's joins run against a simulated
//! cluster whose nodes started alone.

use kbz_core::async_trait;
use kbz_core::component::HostExec;
use kbz_core::engine::Mode;
use kbz_core::health::{HealthRaw, HealthStatus, HostAnswer};
use kbz_core::{
    ClusterChangeKind, Cmd, Component, Context, Engine, ExecError, Executor, Output, RunOptions,
};
use kbz_errors::{Code, HasCode};
use kbz_rabbitmq::layout::{self, Layout};
use kbz_rabbitmq::{cluster, health, scripts, Rabbitmq};
use kbz_testkit::{host_execs, output, FakeConnector, FakeHost};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::common::*;

const MQ: [&str; 3] = ["mq1", "mq2", "mq3"];

/// A fleet for the example inventory: Debian's unit for the package, and the CLI answers of
/// a cluster classic_config formed on first start (every node sees all three running),
/// with a fresh node's users. When `from` is given, every host starts with that state.
fn fleet(ctx: &Context, from: Option<&FakeConnector>) -> FakeConnector {
    let c = FakeConnector::debian_fleet(&ctx.inventory.hosts);
    for (name, h) in c.hosts() {
        h.package_units("rabbitmq-server", &["rabbitmq-server"]);
        for s in [
            scripts::RUNNING,
            scripts::JOIN,
            scripts::ACCESS_CHANGE,
            scripts::QUORUM_CRITICAL,
        ] {
            h.script(s, output("", 0));
        }
        h.script(
            scripts::OBSERVE,
            output(
                &observation(&status(&NODES, &NODES), &fresh_access(), ""),
                0,
            ),
        );
        if let Some(old) = from.and_then(|f| f.host(name)) {
            let s = old.state();
            h.with_state(|st| *st = s);
        }
    }
    c
}

fn converged(c: &FakeConnector) {
    for n in MQ {
        let h = host(c, n);
        h.script(scripts::OBSERVE, output(&converged_observation(), 0));
    }
}

fn converged_observation() -> String {
    observation(
        &status(&NODES, &NODES),
        &converged_access(),
        "ok 'kbz_admin'\nok 'app'\n",
    )
}

fn host(c: &FakeConnector, name: &str) -> Arc<FakeHost> {
    c.host(name).expect("fake host")
}

fn quick(ctx: &Context) -> Context {
    let mut cfg = (*ctx.config).clone();
    cfg.timeouts.readiness = 3;
    Context::new((*ctx.inventory).clone(), cfg, (*ctx.secrets).clone())
}

fn ran_mutations(c: &FakeConnector) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (name, h) in c.hosts() {
        for s in h.ran() {
            if scripts::MUTATING.iter().any(|m| s.starts_with(m)) {
                v.push((name.clone(), s.lines().next().unwrap_or("").to_string()));
            }
        }
    }
    v
}

async fn run(
    ctx: &Context,
    c: FakeConnector,
    mode: Mode,
) -> (
    Result<kbz_core::RunReport, kbz_core::engine::EngineError>,
    Arc<FakeConnector>,
) {
    let c = Arc::new(c);
    let engine = Engine::new(ctx.clone(), vec![Arc::new(Rabbitmq)], c.clone());
    let r = engine
        .run(&RunOptions {
            mode,
            ..RunOptions::default()
        })
        .await;
    (r, c)
}

async fn install(ctx: &Context) -> (kbz_core::RunReport, Arc<FakeConnector>) {
    let (r, c) = run(ctx, fleet(ctx, None), Mode::Install).await;
    (r.unwrap_or_else(|e| panic!("install failed: {e}")), c)
}

#[tokio::test]
async fn fresh_install_writes_the_cookie_first_and_creates_users() {
    let ctx = example_ctx();
    let (report, c) = install(&ctx).await;
    for n in MQ {
        assert!(report.hosts[n].changed > 0, "{n}: {:?}", report.hosts[n]);
        let st = host(&c, n).state();
        assert!(st.packages.contains("rabbitmq-server"), "{n}");
        let u = &st.services["rabbitmq-server"];
        assert!(u.enabled && u.active, "{n}");
        let cookie = &st.files[layout::COOKIE];
        assert_eq!(
            (cookie.mode, cookie.owner.as_str()),
            (0o400, "rabbitmq:rabbitmq")
        );
        assert_eq!(
            cookie.content,
            ctx.secret(kbz_rabbitmq::SECRET_COOKIE)
                .expect("cookie")
                .expose()
                .as_bytes()
        );
        assert!(st.done_commands.contains("rabbitmq-system-user"));
        // The cookie is on the host before the package (whose postinst starts the server).
        let ops = host(&c, n).applied();
        let pos =
            |pred: &dyn Fn(&kbz_core::resource::Op) -> bool| ops.iter().position(pred).expect("op");
        let cookie_at = pos(
            &|o| matches!(o, kbz_core::resource::Op::WriteFile { path, .. } if path == layout::COOKIE),
        );
        let pkg_at = pos(&|o| format!("{o:?}").contains("InstallPackages"));
        assert!(cookie_at < pkg_at, "{ops:#?}");
    }
    // The cluster was formed by classic_config: no join; the users step ran on mq1.
    let changes: Vec<(&str, ClusterChangeKind, &str)> = report
        .cluster_changes
        .iter()
        .map(|c| (c.host.as_str(), c.kind, c.detail.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            (
                "mq1",
                ClusterChangeKind::Create,
                "vhost app added (default queue type quorum)"
            ),
            ("mq1", ClusterChangeKind::Create, "user kbz_admin added"),
            (
                "mq1",
                ClusterChangeKind::Create,
                "user kbz_admin: tags [administrator]"
            ),
            (
                "mq1",
                ClusterChangeKind::Create,
                "user kbz_admin: full permissions on vhost /"
            ),
            (
                "mq1",
                ClusterChangeKind::Create,
                "user kbz_admin: full permissions on vhost app"
            ),
            ("mq1", ClusterChangeKind::Create, "user app added"),
            (
                "mq1",
                ClusterChangeKind::Create,
                "user app: full permissions on vhost app"
            ),
            ("mq1", ClusterChangeKind::Create, "user guest deleted"),
        ]
    );
    let ran = host(&c, "mq1").ran();
    assert!(ran
        .iter()
        .any(|s| s.contains("'add_vhost' 'app' '--default-queue-type' 'quorum'")));
    assert!(ran.iter().any(|s| s.contains("'delete_user' 'guest'")));
    // Passwords never in a script: they go through stdin.
    for (_, h) in c.hosts() {
        for s in h.ran() {
            for name in Rabbitmq.secret_names() {
                let v = ctx.secret(&name).expect("secret");
                assert!(!s.contains(v.expose()), "{name} in {s}");
            }
        }
    }
    assert!(ran_mutations(&c).iter().all(|(h, _)| h == "mq1"));
}

#[tokio::test]
async fn converged_rerun_changes_nothing_and_restarts_nothing() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    converged(&c);
    let (r, c) = run(&ctx, c, Mode::Install).await;
    let report = r.expect("re-run");
    assert_eq!(report.plan.operations(), 0, "{}", report.plan.render());
    // The converged re-run's SSH round trips per host (facts, the batched probe, the
    // host lock taken and released, then ONE observation per RabbitMQ host: a single
    // `rabbitmqctl eval` answers the cluster, users, vhosts, permissions and logins).
    assert_eq!(
        kbz_testkit::round_trips(&c),
        concat!(
            "db1=3 db2=3 db3=3 k8s-m1=3 k8s-m2=3 k8s-m3=3 k8s-w1=3 k8s-w2=3 k8s-w3=3 ",
            "lb1=3 lb2=3 mq1=5 mq2=5 mq3=5"
        )
    );
    for n in MQ {
        let ran = host(&c, n).ran();
        let observed = ran
            .iter()
            .filter(|s| s.starts_with(scripts::OBSERVE))
            .count();
        assert_eq!(observed, 1, "{n}: {ran:#?}");
    }
    assert_eq!(
        (report.summary.changed, report.summary.cluster_changes),
        (0, 0),
        "{:?}",
        report.cluster_changes
    );
    for (name, h) in c.hosts() {
        assert_eq!(h.restarts("rabbitmq-server"), 0, "{name}");
        assert!(h.applied().is_empty(), "{name}: {:?}", h.applied());
    }
    assert!(ran_mutations(&c).is_empty(), "{:?}", ran_mutations(&c));
    // Nothing changed on the hosts: the rolling gate was never asked.
    assert!(c.hosts().all(|(_, h)| !h
        .ran()
        .iter()
        .any(|s| s.starts_with(scripts::QUORUM_CRITICAL))));
}

#[tokio::test]
async fn a_drifted_password_is_reset_through_stdin() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    converged(&c);
    host(&c, "mq1").script(
        scripts::OBSERVE,
        output(
            &observation(
                &status(&NODES, &NODES),
                &converged_access(),
                "ok 'kbz_admin'\nbad 'app'\n",
            ),
            0,
        ),
    );
    let (r, c) = run(&ctx, c, Mode::Install).await;
    let report = r.expect("run");
    assert_eq!(report.summary.changed, 0);
    let d: Vec<&str> = report
        .cluster_changes
        .iter()
        .map(|c| c.detail.as_str())
        .collect();
    assert_eq!(d, ["user app: password set from the secrets file"]);
    assert_eq!(
        ran_mutations(&c),
        [(
            "mq1".to_string(),
            format!("{} change_password", scripts::ACCESS_CHANGE)
        )]
    );
}

#[tokio::test]
async fn a_cluster_that_never_forms_is_e035() {
    let ctx = quick(&example_ctx());
    let c = fleet(&ctx, None);
    // mq3 is a member but mq1 and mq2 never see it running.
    for n in ["mq1", "mq2"] {
        host(&c, n).script(
            scripts::OBSERVE,
            output(
                &observation(&status(&NODES, &NODES[..2]), &fresh_access(), ""),
                0,
            ),
        );
    }
    let hx = host_execs(&c, &rabbit_hosts(&ctx));
    let e = cluster::converge(&ctx, &hx, &Layout::debian())
        .await
        .expect_err("not formed");
    assert_eq!(e.code(), Code::E035, "{e}");
    assert!(
        e.to_string()
            .contains("mq1 does not see rabbit@mq3 running"),
        "{e}"
    );
    assert!(ran_mutations(&c).is_empty());
}

#[tokio::test]
async fn a_node_that_never_runs_is_a_readiness_timeout() {
    let ctx = quick(&example_ctx());
    let c = fleet(&ctx, None);
    for marker in [scripts::OBSERVE, scripts::RUNNING] {
        host(&c, "mq2").script(
            marker,
            output(
                "Error: unable to perform an operation on node 'rabbit@mq2'",
                69,
            ),
        );
    }
    let hx = host_execs(&c, &rabbit_hosts(&ctx));
    let e = cluster::converge(&ctx, &hx, &Layout::debian())
        .await
        .expect_err("down");
    assert_eq!(e.code(), Code::E031, "{e}");
    assert!(e.to_string().contains("rabbit@mq2"), "{e}");
}

/// A converged fleet whose rabbitmq.conf differs on every host (as after a kbz upgrade).
fn drifted(ctx: &Context, first: &FakeConnector) -> FakeConnector {
    let c = fleet(ctx, Some(first));
    converged(&c);
    for n in MQ {
        host(&c, n).with_state(|s| {
            if let Some(f) = s.files.get_mut(layout::CONF) {
                f.content.extend_from_slice(b"# edited by hand\n");
            }
        });
    }
    c
}

#[tokio::test]
async fn a_config_change_rolls_one_host_at_a_time_behind_the_quorum_gate() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let (r, c) = run(&ctx, drifted(&ctx, &first), Mode::Install).await;
    let report = r.expect("roll");
    assert_eq!(report.summary.cluster_changes, 0);
    for n in MQ {
        let h = host(&c, n);
        assert_eq!(h.restarts("rabbitmq-server"), 1, "{n}");
        let gates: Vec<String> = h
            .ran()
            .into_iter()
            .filter(|s| s.starts_with(scripts::QUORUM_CRITICAL))
            .collect();
        // Before the roll (its own node) and after its own restart (every node).
        assert_eq!(gates.len(), 2, "{n}: {gates:?}");
        assert!(gates[1].contains("-n 'rabbit@mq1' check_if_node_is_quorum_critical"));
        assert!(gates[1].contains("-n 'rabbit@mq3' check_if_node_is_quorum_critical"));
    }
}

#[tokio::test]
async fn a_quorum_critical_node_stops_the_roll_before_anything_restarts() {
    let ctx = quick(&example_ctx());
    let (_, first) = install(&ctx).await;
    let c = drifted(&ctx, &first);
    host(&c, "mq2").script(
        scripts::QUORUM_CRITICAL,
        output(
            "Error:\nrabbit@mq2 is quorum critical for queue 'orders' in vhost 'app'",
            1,
        ),
    );
    let (r, c) = run(&ctx, c, Mode::Install).await;
    let e = r.expect_err("gate");
    match &e {
        kbz_core::engine::EngineError::Failed { source, .. } => {
            assert_eq!(source.code(), Code::E036, "{e}");
            assert!(e.to_string().contains("quorum critical"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    for n in MQ {
        assert_eq!(host(&c, n).restarts("rabbitmq-server"), 0, "{n}");
    }
}

#[tokio::test]
async fn uninstall_removes_the_service_package_cookie_and_config() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let (r, c) = run(&ctx, fleet(&ctx, Some(&first)), Mode::Uninstall).await;
    r.expect("uninstall");
    for n in MQ {
        let st = host(&c, n).state();
        assert!(!st.packages.contains("rabbitmq-server"), "{n}");
        assert!(!st.services.contains_key("rabbitmq-server"), "{n}");
        let left: Vec<&String> = st.files.keys().filter(|p| p.contains("rabbitmq")).collect();
        assert!(left.is_empty(), "{n}: {left:?}");
    }
}

#[tokio::test]
async fn dry_run_plans_everything_and_touches_nothing() {
    let ctx = example_ctx();
    let c = Arc::new(fleet(&ctx, None));
    let engine = Engine::new(ctx.clone(), vec![Arc::new(Rabbitmq)], c.clone());
    let r = engine
        .run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
        .await;
    let report = r.expect("dry-run");
    assert!(report.plan.operations() > 0);
    assert_eq!(report.summary.cluster_changes, 0);
    for (n, h) in c.hosts() {
        assert!(h.applied().is_empty(), "{n}");
    }
    assert!(ran_mutations(&c).is_empty());
}

#[tokio::test]
async fn health_judges_running_alarms_membership_and_quorum() {
    let ctx = example_ctx();
    let l = Layout::debian();
    let hosts = rabbit_hosts(&ctx);
    let answer = |h: &kbz_core::Host, running: i32, alarms: i32, st: &str| {
        let node = if running != 0 {
            format!("{st}\n")
        } else {
            let a = if alarms != 0 { "[\"memory\"]" } else { "[]" };
            format!("@@ running\nyes\n@@ local-alarms\n{a}\n@@ cluster\n{st}@@ end\nok\n")
        };
        let text = kbz_core::health::render_output(&[("rabbitmq", "node", &node, running)]);
        HostAnswer {
            host: h.clone(),
            result: Ok(kbz_core::health::split_output(&text)),
        }
    };
    let all = status(&NODES, &NODES);
    let good: Vec<HostAnswer> = hosts.iter().map(|h| answer(h, 0, 0, &all)).collect();
    let checks = health::checks(&ctx, &HealthRaw::new("rabbitmq", &good), &l);
    assert_eq!(checks.len(), 10);
    assert!(checks.iter().all(|c| c.is_ok()), "{checks:#?}");

    let two = status(&NODES, &NODES[..2]);
    let bad = vec![
        answer(&hosts[0], 0, 0, &two),
        answer(&hosts[1], 0, 1, &two),
        answer(&hosts[2], 69, 0, "Error: unable to perform an operation"),
    ];
    let checks = health::checks(&ctx, &HealthRaw::new("rabbitmq", &bad), &l);
    let failing: Vec<(&str, &str, Option<Code>, HealthStatus)> = checks
        .iter()
        .filter(|c| !c.is_ok())
        .map(|c| (c.host.as_str(), c.check.as_str(), c.code, c.status))
        .collect();
    assert_eq!(
        failing,
        [
            (
                "mq1",
                "cluster membership",
                Some(Code::E035),
                HealthStatus::Degraded
            ),
            (
                "mq2",
                "local alarms",
                Some(Code::E040),
                HealthStatus::Degraded
            ),
            (
                "mq2",
                "cluster membership",
                Some(Code::E035),
                HealthStatus::Degraded
            ),
            (
                "mq3",
                "rabbitmq node",
                Some(Code::E040),
                HealthStatus::Degraded
            ),
            (
                "mq3",
                "cluster membership",
                Some(Code::E040),
                HealthStatus::Degraded
            ),
        ]
    );
    // Two of three run: the cluster keeps its quorum.
    let q = checks.iter().find(|c| c.check == "quorum").expect("quorum");
    assert!(q.is_ok(), "{q:?}");
    let down = vec![
        answer(&hosts[0], 0, 0, &two),
        answer(&hosts[1], 69, 0, ""),
        answer(&hosts[2], 69, 0, ""),
    ];
    let checks = health::checks(&ctx, &HealthRaw::new("rabbitmq", &down), &l);
    let q = checks.iter().find(|c| c.check == "quorum").expect("quorum");
    assert_eq!((q.status, q.code), (HealthStatus::Down, Some(Code::E036)));
}

/// A simulated cluster: which nodes are clustered together, changed by the join script.
#[derive(Debug)]
struct SimNode {
    name: String,
    node: String,
    clusters: Arc<Mutex<Vec<BTreeSet<String>>>>,
    ran: Mutex<Vec<String>>,
}

#[async_trait]
impl Executor for SimNode {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.ran.lock().expect("lock").push(cmd.script.clone());
        let mut cl = self.clusters.lock().expect("lock");
        let s = &cmd.script;
        let mine = cl
            .iter()
            .find(|c| c.contains(&self.node))
            .cloned()
            .unwrap_or_default();
        let members: Vec<&str> = mine.iter().map(String::as_str).collect();
        if s.starts_with(scripts::OBSERVE) {
            return Ok(output(
                &observation(
                    &status(&members, &members),
                    &converged_access(),
                    "ok 'kbz_admin'\nok 'app'\n",
                ),
                0,
            ));
        }
        if s.starts_with(scripts::RUNNING) {
            return Ok(output("running", 0));
        }
        if s.starts_with(scripts::JOIN) {
            assert_eq!(mine.len(), 1, "only a lone node joins");
            let seed = NODES
                .iter()
                .find(|n| s.contains(&format!("join_cluster '{n}'")))
                .expect("seed");
            cl.retain(|c| !c.contains(&self.node));
            let to = cl
                .iter_mut()
                .find(|c| c.contains(*seed))
                .expect("seed's cluster");
            to.insert(self.node.clone());
            return Ok(output("", 0));
        }
        Err(ExecError::CommandFailed {
            host: self.name.clone(),
            what: format!("unscripted: {}", s.lines().next().unwrap_or("")),
            status: 127,
            stderr: String::new(),
        })
    }
}

fn sim(ctx: &Context, clusters: Vec<Vec<&str>>) -> (Vec<HostExec>, Vec<Arc<SimNode>>) {
    let shared = Arc::new(Mutex::new(
        clusters
            .into_iter()
            .map(|c| c.into_iter().map(String::from).collect())
            .collect(),
    ));
    let nodes: Vec<Arc<SimNode>> = rabbit_hosts(ctx)
        .iter()
        .map(|h| {
            Arc::new(SimNode {
                name: h.hostname.clone(),
                node: format!("rabbit@{}", h.hostname),
                clusters: shared.clone(),
                ran: Mutex::new(Vec::new()),
            })
        })
        .collect();
    let hx = rabbit_hosts(ctx)
        .into_iter()
        .zip(&nodes)
        .map(|(host, n)| HostExec {
            host,
            exec: n.clone() as Arc<dyn Executor>,
        })
        .collect();
    (hx, nodes)
}

#[tokio::test]
async fn nodes_that_started_alone_join_the_first_one_at_a_time() {
    let ctx = example_ctx();
    let (hx, nodes) = sim(&ctx, vec![vec![NODES[0]], vec![NODES[1]], vec![NODES[2]]]);
    let changes = cluster::converge(&ctx, &hx, &Layout::debian())
        .await
        .expect("converge");
    let joins: Vec<(&str, &str)> = changes
        .iter()
        .filter(|c| c.kind == ClusterChangeKind::Join)
        .map(|c| (c.host.as_str(), c.detail.as_str()))
        .collect();
    assert_eq!(
        joins,
        [
            ("mq2", "rabbit@mq2 joined rabbit@mq1 (it had started alone)"),
            ("mq3", "rabbit@mq3 joined rabbit@mq1 (it had started alone)"),
        ]
    );
    assert_eq!(changes.len(), 2, "{changes:?}");
    // The join re-checks on the host that the node is still alone, then resets and joins.
    let j = nodes[1]
        .ran
        .lock()
        .expect("lock")
        .iter()
        .find(|s| s.starts_with(scripts::JOIN))
        .cloned()
        .expect("join");
    let order: Vec<usize> = [
        "cluster_status",
        "stop_app",
        "reset",
        "join_cluster",
        "start_app",
    ]
    .iter()
    .map(|w| j.find(w).expect(w))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{j}");
    // A second run finds the cluster formed and changes nothing.
    let again = cluster::converge(&ctx, &hx, &Layout::debian())
        .await
        .expect("converge");
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_lone_first_node_joins_the_pair_the_others_formed() {
    let ctx = example_ctx();
    let (hx, _) = sim(&ctx, vec![vec![NODES[0]], vec![NODES[1], NODES[2]]]);
    let changes = cluster::converge(&ctx, &hx, &Layout::debian())
        .await
        .expect("converge");
    let d: Vec<&str> = changes.iter().map(|c| c.detail.as_str()).collect();
    assert_eq!(d, ["rabbit@mq1 joined rabbit@mq2 (it had started alone)"]);
}

#[allow(dead_code)]
fn _component_is_object_safe(c: &dyn Component) -> &str {
    c.name()
}
