//! Engine behaviour on fake hosts: convergence, zero-change re-runs, bounded round trips,
//! dry-run, and rollback to the exact prior state after a failure at any step.

use kbz_base::Base;
use kbz_core::engine::{Mode, RollbackOutcome};
use kbz_core::hostlock::HostLockOwner;
use kbz_core::{
    ClusterChange, ClusterChangeKind, Component, Config, Context, Engine, EngineError, Executor,
    Host, Inventory, Role, RunOptions, Secrets,
};
use kbz_errors::{Code, HasCode};
use kbz_testkit::fake::FakeState;
use kbz_testkit::fake_engine;
use kbz_testkit::FakeConnector;
use std::sync::Arc;

fn inventory(n: usize) -> Inventory {
    Inventory {
        path: "servers.tsv".into(),
        hosts: (1..=n)
            .map(|i| {
                Host::new(
                    &format!("node{i}"),
                    format!("192.0.2.{}", 10 + i).parse().expect("ip"),
                    &[Role::Etcd],
                )
            })
            .collect(),
    }
}

fn setup(n: usize) -> (Engine, Arc<FakeConnector>) {
    let mut cfg = Config::default();
    cfg.cluster.apt_proxy = Some("http://192.0.2.1:3142".into());
    cfg.cluster.ntp_servers = vec!["192.0.2.1".into()];
    let ctx = Context::new(inventory(n), cfg, Secrets::in_memory());
    fake_engine(ctx, vec![Arc::new(Base)])
}

fn states(fleet: &FakeConnector) -> Vec<(String, FakeState)> {
    fleet.hosts().map(|(n, h)| (n.clone(), h.state())).collect()
}

#[tokio::test]
async fn fresh_hosts_converge_and_rerun_changes_nothing() {
    let (engine, fleet) = setup(3);
    let first = engine.run(&RunOptions::default()).await.expect("first run");
    assert!(first.changed() > 0);
    for (name, h) in fleet.hosts() {
        let s = h.state();
        assert!(!s.swap_active, "{name}: swap still on");
        assert!(s.modules.contains("br_netfilter"));
        assert_eq!(
            s.sysctl.get("net.ipv4.ip_forward").map(String::as_str),
            Some("1")
        );
        assert!(s.packages.contains("chrony"));
        let hosts = String::from_utf8_lossy(&s.files["/etc/hosts"].content).into_owned();
        assert!(hosts.contains("192.0.2.13\tnode3"), "{hosts}");
        assert_eq!(
            s.files["/etc/hostname"].content,
            format!("{name}\n").into_bytes()
        );
        assert!(String::from_utf8_lossy(&s.files["/etc/fstab"].content)
            .contains("#kbz swapoff# UUID=bbbb"));
    }

    let before: Vec<u64> = fleet.hosts().map(|(_, h)| h.restarts("chrony")).collect();
    let applied_before: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    let second = engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.changed(), 0, "{}", second.plan.render());
    let after: Vec<u64> = fleet.hosts().map(|(_, h)| h.restarts("chrony")).collect();
    assert_eq!(before, after, "a converged re-run restarted a service");
    let applied_after: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    assert_eq!(
        applied_before, applied_after,
        "a converged re-run applied an operation"
    );
}

#[tokio::test]
async fn converged_rerun_costs_facts_plus_one_round_trip_per_component_and_host_plus_the_lock() {
    let (engine, fleet) = setup(3);
    engine.run(&RunOptions::default()).await.expect("first run");
    for (_, h) in fleet.hosts() {
        h.reset_round_trips();
    }
    let report = engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    for (name, h) in fleet.hosts() {
        assert_eq!(
            h.round_trips(),
            4,
            "{name}: a converged host costs one facts and one probe round trip, plus taking \
             and releasing its host lock"
        );
    }
    assert_eq!(report.round_trips, 12);
}

#[tokio::test]
async fn dry_run_plans_without_touching_hosts() {
    let (engine, fleet) = setup(2);
    let before = states(&fleet);
    let report = engine
        .run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
        .await
        .expect("dry run");
    assert_eq!(before, states(&fleet), "dry-run changed a host");
    let text = report.plan.render();
    assert!(report.plan.operations() > 10, "{text}");
    assert!(
        text.ends_with(&format!(
            "{} operations would change on 2 hosts\n",
            report.plan.operations()
        )),
        "{text}"
    );
    assert!(
        text.contains("+192.0.2.12\tnode2"),
        "file diffs are shown: {text}"
    );
}

#[tokio::test]
async fn unreachable_host_is_planned_fresh_in_dry_run_and_refused_for_real() {
    let inv = inventory(2);
    let mut fleet = FakeConnector::debian_fleet(&inv.hosts);
    fleet.set_unreachable("node2");
    let fleet = Arc::new(fleet);
    let ctx = Context::new(inv, Config::default(), Secrets::in_memory());
    let engine = Engine::new(
        ctx,
        vec![Arc::new(Base) as Arc<dyn Component>],
        fleet.clone(),
    );
    let report = engine
        .run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
        .await
        .expect("dry run");
    assert!(report.hosts["node2"].unreachable);
    assert!(report
        .plan
        .render()
        .contains("node2 · module 1 base (not reached: planned as a fresh host)"));

    let before = states(&fleet);
    match engine.run(&RunOptions::default()).await {
        Err(e @ EngineError::Connect(_)) => assert_eq!(e.diagnostic().code, Code::E011),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(
        before,
        states(&fleet),
        "nothing may change when a host is unreachable"
    );
}

#[tokio::test]
async fn failure_at_any_step_rolls_every_host_back_exactly() {
    // Count the operations of a fresh converge of one host, then fail at each of them in turn.
    let (engine, fleet) = setup(1);
    let n = engine
        .run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
        .await
        .expect("plan")
        .plan
        .operations();
    drop((engine, fleet));
    assert!(n > 10);
    for k in 1..=n as u64 {
        let (engine, fleet) = setup(3);
        // Make one host partly configured already, so rollback must restore old bytes too.
        fleet.host("node1").expect("node1").with_state(|s| {
            s.files.get_mut("/etc/hosts").expect("hosts").mode = 0o600;
            s.sysctl.insert("vm.swappiness".into(), "30".into());
        });
        let before = states(&fleet);
        fleet.host("node2").expect("node2").fail_nth_operation(k);
        let err = engine
            .run(&RunOptions::default())
            .await
            .expect_err("must fail");
        match &err {
            EngineError::Failed { host, rollback, .. } => {
                assert_eq!(host.as_deref(), Some("node2"));
                assert_eq!(*rollback, RollbackOutcome::RolledBack, "step {k}");
            }
            other => panic!("step {k}: unexpected {other:?}"),
        }
        // The code names the kind of operation that failed (file, package, service, kernel).
        let code = err.diagnostic().code;
        assert!(
            [Code::E021, Code::E022, Code::E023, Code::E024, Code::E025].contains(&code),
            "step {k}: {code}"
        );
        for ((name, b), (_, a)) in before.iter().zip(states(&fleet).iter()) {
            assert_eq!(
                b, a,
                "step {k}: {name} differs from its state before the run"
            );
        }
    }
}

#[tokio::test]
async fn skip_cleanup_keeps_changes_and_rollback_replays_the_journal() {
    let dir = tempfile::tempdir().expect("tmp");
    let (engine, fleet) = setup(2);
    let before = states(&fleet);
    fleet
        .host("node1")
        .expect("node1")
        .fail_matching("install packages");
    let opts = RunOptions {
        skip_cleanup: true,
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    match engine.run(&opts).await {
        Err(EngineError::Failed {
            rollback: RollbackOutcome::Kept,
            ..
        }) => {}
        other => panic!("expected a kept failure, got {other:?}"),
    }
    assert_ne!(
        before,
        states(&fleet),
        "skip-cleanup must keep what was applied"
    );
    fleet.host("node1").expect("node1").clear_failure();
    // A new run refuses to start over the journal: both ways out are in the message.
    let refused = engine
        .run(&RunOptions {
            skip_cleanup: false,
            ..opts.clone()
        })
        .await
        .expect_err("a journal needs a rollback");
    assert_eq!(refused.code(), Code::E028, "{refused}");
    let text = refused.to_string();
    assert!(text.contains("kbz-install rollback"), "{text}");
    assert!(text.contains("mv "), "{text}");
    let summary = engine.rollback_last(&opts).await.expect("rollback");
    assert!(summary.steps > 0);
    assert!(summary.cluster_not_undone.is_empty());
    assert_eq!(before, states(&fleet));
    // A second rollback has nothing to do, and says so with E010.
    let again = engine.rollback_last(&opts).await.expect_err("nothing left");
    assert_eq!(again.diagnostic().code, Code::E010);
}

#[tokio::test]
async fn uninstall_removes_only_kbz_files() {
    let (engine, fleet) = setup(1);
    engine.run(&RunOptions::default()).await.expect("install");
    engine
        .run(&RunOptions {
            mode: Mode::Uninstall,
            ..RunOptions::default()
        })
        .await
        .expect("uninstall");
    let s = fleet.host("node1").expect("node1").state();
    assert!(!s.files.contains_key(kbz_base::SYSCTL_FILE));
    assert!(!s.files.contains_key(kbz_base::APT_PROXY_FILE));
    assert!(s.files.contains_key("/etc/hosts"));
}

#[tokio::test]
async fn unknown_component_and_module_are_usage_errors() {
    let (engine, _) = setup(1);
    let e = engine
        .run(&RunOptions {
            only: Some("redis-typo".into()),
            ..RunOptions::default()
        })
        .await
        .expect_err("usage");
    assert_eq!(e.diagnostic().code, Code::E010);
    assert!(e.to_string().contains("known: base"));
    let e = engine
        .run(&RunOptions {
            start_from_module: 9,
            ..RunOptions::default()
        })
        .await
        .expect_err("usage");
    assert_eq!(e.diagnostic().code, Code::E010);
}

/// A component whose cluster step joins each host once (a marker file records the join) and
/// refuses to run without the facts the engine gathered.
#[derive(Debug)]
struct Joiner;

#[async_trait::async_trait]
impl Component for Joiner {
    fn name(&self) -> &'static str {
        "joiner"
    }
    fn module(&self) -> u8 {
        4
    }
    fn desired(
        &self,
        _ctx: &Context,
        _host: &Host,
    ) -> Result<Vec<kbz_core::Resource>, kbz_core::ComponentError> {
        Ok(vec![kbz_core::Resource::file(
            "/etc/joiner.conf",
            b"joined\n".to_vec(),
            0o644,
        )])
    }
    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[kbz_core::component::HostExec],
    ) -> Result<Vec<ClusterChange>, kbz_core::ComponentError> {
        let mut changes = Vec::new();
        for hx in hosts {
            let facts = ctx.facts.get(&hx.host.hostname).ok_or_else(|| {
                kbz_core::ComponentError::Input(kbz_errors::Diagnostic::new(
                    kbz_errors::Code::E010,
                    format!("no facts for {}", hx.host.hostname),
                ))
            })?;
            assert_eq!(facts.os_id, "debian");
            if hx.exec.read_file("/var/lib/joiner/member").await?.is_none() {
                hx.exec
                    .put_file("/var/lib/joiner/member", b"1\n", 0o600, "root:root")
                    .await?;
                changes.push(ClusterChange::new(
                    ClusterChangeKind::Join,
                    &hx.host.hostname,
                    "joined the cluster",
                ));
            }
        }
        Ok(changes)
    }
}

#[tokio::test]
async fn cluster_changes_are_counted_and_a_converged_rerun_reports_none() {
    let ctx = Context::new(inventory(3), Config::default(), Secrets::in_memory());
    let (engine, _fleet) = fake_engine(ctx, vec![Arc::new(Joiner)]);
    let first = engine.run(&RunOptions::default()).await.expect("first run");
    assert_eq!(first.summary.changed, 3);
    assert_eq!(
        first.summary.cluster_changes, 3,
        "{:?}",
        first.cluster_changes
    );
    assert!(first
        .cluster_changes
        .iter()
        .all(|c| c.component == "joiner" && c.kind == ClusterChangeKind::Join));
    assert!(first.hosts.values().all(|h| h.cluster_changed == 1));
    let json = serde_json::to_value(&first).expect("json");
    assert_eq!(json["summary"]["cluster_changes"], 3);
    assert_eq!(json["summary"]["changed"], 3);

    let second = engine.run(&RunOptions::default()).await.expect("re-run");
    assert_eq!(
        (second.summary.changed, second.summary.cluster_changes),
        (0, 0)
    );
    let json = serde_json::to_value(&second).expect("json");
    assert_eq!(json["summary"]["cluster_changes"], 0);
}

/// A component that writes a file and then hangs in its cluster step until it is dropped,
/// as a controller killed mid-run leaves things.
#[derive(Debug)]
struct Hangs;

#[async_trait::async_trait]
impl Component for Hangs {
    fn name(&self) -> &'static str {
        "hangs"
    }
    fn module(&self) -> u8 {
        5
    }
    fn desired(
        &self,
        _ctx: &Context,
        _host: &Host,
    ) -> Result<Vec<kbz_core::Resource>, kbz_core::ComponentError> {
        Ok(vec![kbz_core::Resource::file(
            "/etc/hangs.conf",
            b"x\n".to_vec(),
            0o644,
        )])
    }
    async fn converge_cluster(
        &self,
        _ctx: &Context,
        _hosts: &[kbz_core::component::HostExec],
    ) -> Result<Vec<ClusterChange>, kbz_core::ComponentError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_killed_controller_leaves_a_journal_that_rollback_replays() {
    let dir = tempfile::tempdir().expect("tmp");
    let ctx = Context::new(inventory(2), Config::default(), Secrets::in_memory());
    let (engine, fleet) = fake_engine(ctx, vec![Arc::new(Base), Arc::new(Hangs)]);
    let before = states(&fleet);
    let opts = RunOptions {
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    let engine = Arc::new(engine);
    let run = {
        let (engine, opts) = (engine.clone(), opts.clone());
        tokio::spawn(async move { engine.run(&opts).await })
    };
    // Wait until every host has its file, then kill the run where it stands.
    for _ in 0..500 {
        if fleet
            .hosts()
            .all(|(_, h)| h.state().files.contains_key("/etc/hangs.conf"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    run.abort();
    assert!(run.await.expect_err("killed").is_cancelled());
    assert_ne!(before, states(&fleet));
    let journal = kbz_core::journal::Journal::load(dir.path()).expect("journal");
    assert_eq!(journal.status, kbz_core::journal::RunStatus::Running);
    assert!(journal.needs_rollback());
    // The killed run's host locks stay on the hosts; its process is gone, as when a
    // controller is killed (this test process lives on, so give the locks a dead pid).
    for (_, h) in fleet.hosts() {
        h.with_state(|s| {
            let f = s
                .files
                .get_mut(HOST_LOCK)
                .expect("the killed run's host lock");
            let mut owner: HostLockOwner = serde_json::from_slice(&f.content).expect("a kbz lock");
            owner.pid = DEAD_PID;
            f.content = format!("{}\n", owner.line()).into_bytes();
        });
    }
    // A new install is refused: the stale locks are named, with the way out.
    let other = tempfile::tempdir().expect("tmp");
    let refused = engine
        .run(&RunOptions {
            state_dir: Some(other.path().to_path_buf()),
            ..RunOptions::default()
        })
        .await
        .expect_err("stale host locks");
    assert_eq!(refused.code(), Code::E067, "{refused}");
    let text = refused.to_string();
    assert!(text.contains("node1: stale host lock"), "{text}");
    assert!(text.contains("node2: stale host lock"), "{text}");
    assert!(text.contains("kbz-install rollback"), "{text}");

    // Rollback is the remedy: it takes the stale locks over, names them and undoes the run.
    let summary = engine.rollback_last(&opts).await.expect("rollback");
    assert!(summary.steps > 0);
    assert_eq!(summary.stale_locks_taken_over.len(), 2, "{summary:?}");
    assert!(summary.stale_locks_taken_over[0].starts_with("node1: `kbz-install install`"));
    assert_eq!(
        before,
        states(&fleet),
        "rollback restored every host and freed its lock"
    );
}

const HOST_LOCK: &str = kbz_core::shell::HOST_LOCK_PATH;
/// A pid no process has (above Linux's pid_max).
const DEAD_PID: u32 = u32::MAX - 1;

/// A component whose cluster step waits at a gate: the run holds its locks until the test
/// opens it.
#[derive(Debug, Default)]
struct Gate {
    entered: tokio::sync::Notify,
    open: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Component for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn module(&self) -> u8 {
        2
    }
    fn desired(
        &self,
        _ctx: &Context,
        _host: &Host,
    ) -> Result<Vec<kbz_core::Resource>, kbz_core::ComponentError> {
        Ok(Vec::new())
    }
    async fn converge_cluster(
        &self,
        _ctx: &Context,
        _hosts: &[kbz_core::component::HostExec],
    ) -> Result<Vec<ClusterChange>, kbz_core::ComponentError> {
        self.entered.notify_one();
        self.open.notified().await;
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn two_concurrent_runs_on_one_fleet_the_second_is_refused_naming_every_host() {
    let inv = inventory(3);
    let fleet = Arc::new(FakeConnector::debian_fleet(&inv.hosts));
    let gate = Arc::new(Gate::default());
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    // Two controllers (two state directories), one fleet.
    let first = Arc::new(Engine::new(
        Context::new(inv.clone(), Config::default(), Secrets::in_memory()),
        vec![Arc::new(Base) as Arc<dyn Component>, gate.clone()],
        fleet.clone(),
    ));
    let second = Engine::new(
        Context::new(inv, Config::default(), Secrets::in_memory()),
        vec![Arc::new(Base) as Arc<dyn Component>],
        fleet.clone(),
    );
    let opts_a = RunOptions {
        state_dir: Some(dir_a.path().to_path_buf()),
        ..RunOptions::default()
    };
    let run = {
        let (first, opts) = (first.clone(), opts_a.clone());
        tokio::spawn(async move { first.run(&opts).await })
    };
    gate.entered.notified().await;
    for (name, h) in fleet.hosts() {
        let lock = String::from_utf8_lossy(&h.state().files[HOST_LOCK].content).into_owned();
        let owner: HostLockOwner = serde_json::from_str(lock.trim()).expect("owner");
        assert_eq!(owner.command, "kbz-install install", "{name}");
        assert_eq!(owner.pid, std::process::id(), "{name}");
    }
    let during = states(&fleet);
    let opts_b = RunOptions {
        state_dir: Some(dir_b.path().to_path_buf()),
        ..RunOptions::default()
    };
    let refused = second.run(&opts_b).await.expect_err("the fleet is locked");
    assert_eq!(refused.code(), Code::E067, "{refused}");
    let text = refused.to_string();
    for h in ["node1", "node2", "node3"] {
        assert!(
            text.contains(&format!(
                "{h}: another kbz run holds {HOST_LOCK}: `kbz-install install`"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert_eq!(refused.diagnostic().host.as_deref(), Some("node1"));
    assert_eq!(during, states(&fleet), "the refused run changed nothing");
    // The other controller has no journal: its rollback has nothing to do.
    let e = second
        .rollback_last(&opts_b)
        .await
        .expect_err("nothing to roll back");
    assert_eq!(e.code(), Code::E010, "{e}");

    gate.open.notify_one();
    run.await.expect("join").expect("the first run finishes");
    for (name, h) in fleet.hosts() {
        assert!(
            !h.state().files.contains_key(HOST_LOCK),
            "{name}: lock released"
        );
    }
    second.run(&opts_b).await.expect("free again");
}

#[tokio::test]
async fn one_locked_host_refuses_the_run_and_the_others_locks_are_released() {
    let (engine, fleet) = setup(3);
    let foreign = HostLockOwner {
        controller: "ops-laptop".into(),
        machine: "0123456789abcdef".into(),
        uid: 1000,
        pid: 4242,
        started: "2026-01-01T00:00:00Z".into(),
        command: "kbz-install uninstall".into(),
    };
    fleet.host("node2").expect("node2").with_state(|s| {
        s.files.insert(
            HOST_LOCK.into(),
            kbz_testkit::fake::FakeFile {
                content: format!("{}\n", foreign.line()).into_bytes(),
                mode: 0o644,
                owner: "root:root".into(),
            },
        )
    });
    let before = states(&fleet);
    let e = engine
        .run(&RunOptions::default())
        .await
        .expect_err("node2 is locked");
    assert_eq!(e.code(), Code::E067);
    let text = e.to_string();
    assert!(text.starts_with("1 host(s) are locked by another run, nothing was changed: node2: another kbz run holds"), "{text}");
    assert!(text.contains("`kbz-install uninstall` from controller ops-laptop (pid 4242, uid 1000, since 2026-01-01T00:00:00Z)"), "{text}");
    assert!(
        text.contains("ssh node2 sudo rm /run/kbz/host.lock"),
        "{text}"
    );
    assert!(!text.contains("node1") && !text.contains("node3"), "{text}");
    assert_eq!(
        before,
        states(&fleet),
        "nothing changed, node1's and node3's locks released"
    );
    // A lock that is not kbz's is named too.
    fleet.host("node2").expect("node2").with_state(|s| {
        s.files.get_mut(HOST_LOCK).expect("lock").content = b"garbage\n".to_vec();
    });
    let text = engine
        .run(&RunOptions::default())
        .await
        .expect_err("locked")
        .to_string();
    assert!(
        text.contains("node2: /run/kbz/host.lock exists but does not name a kbz run (\"garbage\")"),
        "{text}"
    );
    // Dry-runs take no lock.
    engine
        .run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
        .await
        .expect("a dry-run ignores host locks");
}

#[tokio::test]
async fn two_runs_of_one_state_directory_collide_on_the_controller_lock() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = inventory(2);
    let fleet = Arc::new(FakeConnector::debian_fleet(&inv.hosts));
    let gate = Arc::new(Gate::default());
    let engine = Arc::new(Engine::new(
        Context::new(inv, Config::default(), Secrets::in_memory()),
        vec![Arc::new(Base) as Arc<dyn Component>, gate.clone()],
        fleet.clone(),
    ));
    let opts = RunOptions {
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    let run = {
        let (engine, opts) = (engine.clone(), opts.clone());
        tokio::spawn(async move { engine.run(&opts).await })
    };
    gate.entered.notified().await;
    let e = engine
        .run(&RunOptions {
            mode: Mode::Uninstall,
            ..opts.clone()
        })
        .await
        .expect_err("the state directory is locked");
    assert_eq!(e.code(), Code::E066, "{e}");
    assert!(e.to_string().contains("`kbz-install install`"), "{e}");
    let e = engine.rollback_last(&opts).await.expect_err("locked");
    assert_eq!(e.code(), Code::E066, "{e}");
    gate.open.notify_one();
    run.await.expect("join").expect("first run");
}

#[tokio::test]
async fn rollback_reaches_the_reachable_hosts_and_lists_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let (engine, fleet) = setup(3);
    let before = states(&fleet);
    fleet
        .host("node3")
        .expect("node3")
        .fail_matching("install packages");
    let opts = RunOptions {
        skip_cleanup: true,
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    engine.run(&opts).await.expect_err("node3 fails");
    fleet.host("node3").expect("node3").clear_failure();
    fleet.set_reachable("node2", false);
    let err = engine
        .rollback_last(&opts)
        .await
        .expect_err("node2 is unreachable");
    assert_eq!(err.code(), Code::E029);
    let text = err.to_string();
    assert!(text.contains("node2: not connected"), "{text}");
    assert!(!text.contains("node1") && !text.contains("node3"), "{text}");
    let now = states(&fleet);
    assert_eq!(before[0], now[0], "node1 was rolled back");
    assert_eq!(before[2], now[2], "node3 was rolled back");
    assert_ne!(before[1], now[1], "node2 could not be reached");
    // The journal keeps only node2's steps; once it is back, a retry finishes the job.
    let journal = kbz_core::journal::Journal::load(dir.path()).expect("journal");
    assert!(journal.entries.iter().all(|e| e.host == "node2"));
    fleet.set_reachable("node2", true);
    engine.rollback_last(&opts).await.expect("retry");
    assert_eq!(before, states(&fleet));
}

/// A component that always fails on every host (module 6, after `Joiner`).
#[derive(Debug)]
struct Fails;

#[async_trait::async_trait]
impl Component for Fails {
    fn name(&self) -> &'static str {
        "fails"
    }
    fn module(&self) -> u8 {
        6
    }
    fn desired(
        &self,
        _ctx: &Context,
        _host: &Host,
    ) -> Result<Vec<kbz_core::Resource>, kbz_core::ComponentError> {
        Ok(vec![kbz_core::Resource::file(
            "/etc/fails.conf",
            b"x\n".to_vec(),
            0o644,
        )])
    }
}

#[tokio::test]
async fn a_rollback_never_claims_cluster_changes_were_undone() {
    let ctx = Context::new(inventory(2), Config::default(), Secrets::in_memory());
    let (engine, fleet) = fake_engine(ctx, vec![Arc::new(Joiner), Arc::new(Fails)]);
    for (_, h) in fleet.hosts() {
        h.fail_matching("write /etc/fails.conf");
    }
    let err = engine.run(&RunOptions::default()).await.expect_err("fails");
    match &err {
        EngineError::Failed {
            rollback: RollbackOutcome::ClusterNotUndone(c),
            ..
        } => {
            assert_eq!(c.len(), 2, "{c:?}");
            assert!(c[0].contains("joiner join on node1"), "{c:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(!text.contains("every host was rolled back"), "{text}");
    assert!(text.contains("were not undone"), "{text}");
}

#[tokio::test]
async fn two_concurrent_runs_on_one_state_dir_the_second_is_refused_with_e066() {
    let dir = tempfile::tempdir().expect("tmp");
    let ctx = Context::new(inventory(2), Config::default(), Secrets::in_memory());
    let (engine, fleet) = fake_engine(ctx, vec![Arc::new(Hangs)]);
    let opts = RunOptions {
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    let engine = Arc::new(engine);
    let first = {
        let (engine, opts) = (engine.clone(), opts.clone());
        tokio::spawn(async move { engine.run(&opts).await })
    };
    for _ in 0..500 {
        if fleet
            .hosts()
            .all(|(_, h)| h.state().files.contains_key("/etc/hangs.conf"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let applied: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    let second = engine
        .run(&opts)
        .await
        .expect_err("the first run holds the lock");
    assert_eq!(second.code(), Code::E066, "{second}");
    assert!(
        second
            .to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{second}"
    );
    let after: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    assert_eq!(applied, after, "the refused run changed nothing");
    // A dry-run plans alongside a real run: it takes no lock.
    engine
        .run(&RunOptions {
            dry_run: true,
            ..opts.clone()
        })
        .await
        .expect("dry-run");
    first.abort();
    let _ = first.await;
    assert!(
        !dir.path().join("run.lock").exists(),
        "the lock is released"
    );
}

#[tokio::test]
async fn a_successful_run_keeps_no_old_contents_in_its_journal() {
    const OLD: &str = "old-hosts-line-with-a-secret-Qw7Zk2Lm";
    let dir = tempfile::tempdir().expect("tmp");
    let (engine, fleet) = setup(2);
    for (_, h) in fleet.hosts() {
        h.with_state(|s| {
            if let Some(f) = s.files.get_mut("/etc/hosts") {
                f.content = format!("127.0.0.1\tlocalhost\n# {OLD}\n").into_bytes();
            }
        });
    }
    let opts = RunOptions {
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    let r = engine.run(&opts).await.expect("run");
    assert!(r.changed() > 0);
    let journal = std::fs::read_to_string(dir.path().join("journal.json")).expect("journal");
    assert!(journal.contains("\"succeeded\""), "{journal}");
    assert!(journal.contains("write /etc/hosts"), "{journal}");
    assert!(!journal.contains(OLD), "old bytes kept: {journal}");
}
