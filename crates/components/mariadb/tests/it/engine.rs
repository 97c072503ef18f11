//! FakeHost engine runs of module 8 on the example fleet: a fresh install stops the
//! package's stand-alone server before kbz's config lands, bootstraps mq1, makes the users
//! and joins mq2 then mq3 one at a time; a converged re-run changes nothing; a changed
//! config restarts one node at a time; with every node down the node with the highest
//! seqno is bootstrapped (safe_to_bootstrap set) and the others rejoin; running nodes without
//! a Primary component are E036 and nothing is done; dry-run mutates nothing; uninstall
//! removes what install added.

use kbz_core::component::HostExec;
use kbz_core::engine::Mode;
use kbz_core::{ClusterChangeKind, Context, Engine, RunOptions};
use kbz_errors::{Code, HasCode};
use kbz_mariadb::layout::{self, Layout};
use kbz_mariadb::{cluster, scripts, Mariadb};
use kbz_testkit::{host_execs, output};
use kbz_testkit::{FakeConnector, FakeHost};
use std::sync::Arc;

use crate::common::*;

const NODES: [&str; 3] = ["mq1", "mq2", "mq3"];

/// A fleet for the example inventory: Debian's units for the MariaDB package; the commands
/// of the cluster step succeed (tests script the GATHER state and failures on top). With
/// `from`, every host starts with that fleet's state.
fn fleet(ctx: &Context, from: Option<&FakeConnector>) -> FakeConnector {
    let c = FakeConnector::debian_fleet(&ctx.inventory.hosts);
    for (name, h) in c.hosts() {
        h.package_units("mariadb-server", &["mariadb"]);
        for s in [
            scripts::BOOTSTRAP,
            scripts::JOIN,
            scripts::RESTART,
            scripts::WAIT_SYNCED,
            scripts::USERS,
        ] {
            h.script(s, output("", 0));
        }
        if let Some(old) = from.and_then(|f| f.host(name)) {
            let s = old.state();
            h.with_state(|st| *st = s);
        }
    }
    c
}

fn host(c: &FakeConnector, name: &str) -> Arc<FakeHost> {
    c.host(name).expect("fake host")
}

fn script_all(c: &FakeConnector, gather: &str) {
    for n in NODES {
        host(c, n).script(scripts::GATHER, output(gather, 0));
    }
}

fn mutations(c: &FakeConnector) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for n in NODES {
        for s in host(c, n).ran() {
            if let Some(m) = scripts::MUTATING.iter().find(|m| s.starts_with(**m)) {
                v.push((n.to_string(), m.to_string()));
            }
        }
    }
    v
}

async fn run(
    ctx: &Context,
    c: FakeConnector,
    mode: Mode,
    dry_run: bool,
) -> (kbz_core::RunReport, Arc<FakeConnector>) {
    let c = Arc::new(c);
    let engine = Engine::new(ctx.clone(), vec![Arc::new(Mariadb)], c.clone());
    let report = engine
        .run(&RunOptions {
            mode,
            dry_run,
            ..RunOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    (report, c)
}

/// Installs on a fresh fleet: the report and the fleet.
async fn install(ctx: &Context) -> (kbz_core::RunReport, Arc<FakeConnector>) {
    let c = fleet(ctx, None);
    script_all(&c, &fresh_gather());
    host(&c, "mq1").script(
        scripts::USERS,
        output(
            "create user kbz_sst@localhost\ncreate user kbz_check@localhost\ncreate user app@192.0.2.0/255.255.255.0\ncreate database app\n",
            0,
        ),
    );
    run(ctx, c, Mode::Install, false).await
}

fn hostexecs(ctx: &Context, c: &FakeConnector) -> Vec<HostExec> {
    host_execs(c, &mariadb_hosts(ctx))
}

#[tokio::test]
async fn fresh_install_bootstraps_mq1_and_joins_the_others_one_at_a_time() {
    let ctx = example_ctx();
    let (report, c) = install(&ctx).await;
    let kinds: Vec<(String, ClusterChangeKind)> = report
        .cluster_changes
        .iter()
        .map(|c| (c.host.clone(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("mq1".to_string(), ClusterChangeKind::Bootstrap),
            ("mq1".to_string(), ClusterChangeKind::Create),
            ("mq1".to_string(), ClusterChangeKind::Create),
            ("mq1".to_string(), ClusterChangeKind::Create),
            ("mq1".to_string(), ClusterChangeKind::Create),
            ("mq2".to_string(), ClusterChangeKind::Join),
            ("mq3".to_string(), ClusterChangeKind::Join),
        ]
    );
    assert!(report
        .cluster_changes
        .iter()
        .all(|c| c.component == "mariadb"));
    // Bootstrap, users, then each join waited for with the cluster grown.
    assert_eq!(
        mutations(&c),
        [
            ("mq1".to_string(), scripts::BOOTSTRAP.to_string()),
            ("mq1".to_string(), scripts::USERS.to_string()),
            ("mq2".to_string(), scripts::JOIN.to_string()),
            ("mq3".to_string(), scripts::JOIN.to_string()),
        ]
    );
    let waits = |n: &str| -> Vec<String> {
        host(&c, n)
            .ran()
            .iter()
            .filter(|s| s.starts_with(scripts::WAIT_SYNCED))
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(waits("mq1")[0], format!("{} 1", scripts::WAIT_SYNCED));
    assert_eq!(waits("mq2")[0], format!("{} 2", scripts::WAIT_SYNCED));
    assert_eq!(waits("mq3")[0], format!("{} 3", scripts::WAIT_SYNCED));
    // mq1's bootstrap is a plain galera_new_cluster, not a recovery.
    let boot = host(&c, "mq1")
        .ran()
        .into_iter()
        .find(|s| s.starts_with(scripts::BOOTSTRAP))
        .expect("bootstrap");
    assert!(boot.contains("galera_new_cluster") && !boot.contains("safe_to_bootstrap: 1"));
    for n in NODES {
        let st = host(&c, n).state();
        for p in kbz_mariadb::PACKAGES {
            assert!(st.packages.contains(*p), "{n}: {p}");
        }
        let cnf = &st.files[layout::GALERA_CNF];
        assert_eq!((cnf.mode, cnf.owner.as_str()), (0o640, "root:mysql"));
        let chk = &st.files[layout::CHECK_CNF];
        assert_eq!((chk.mode, chk.owner.as_str()), (0o640, "root:mysql"));
        assert!(st.done_commands.contains("mariadb-standalone-stop"));
        let u = st
            .services
            .get(layout::CHECK_SERVICE)
            .expect("clustercheck unit");
        assert!(u.enabled && u.active, "{n}");
        // The engine never starts MariaDB itself: the cluster step does.
        assert!(!host(&c, n)
            .applied()
            .iter()
            .any(|op| op.describe().contains("mariadb") && op.describe().contains("start")));
    }
    // The stand-alone server stops before kbz's config is written.
    let ran = host(&c, "mq1").ran();
    let applied = host(&c, "mq1").applied();
    assert!(ran
        .iter()
        .any(|s| s.contains("systemctl stop mariadb.service")));
    let cnf_at = applied
        .iter()
        .position(|op| op.describe().contains(layout::GALERA_CNF))
        .expect("config written");
    let stop_at = applied
        .iter()
        .position(|op| op.describe().contains("mariadb-standalone-stop"))
        .expect("stand-alone stop");
    assert!(stop_at < cnf_at, "{applied:?}");
    // The users' SQL went on stdin, never in a script.
    for n in NODES {
        for s in host(&c, n).ran() {
            assert!(!s.contains("IDENTIFIED BY"), "{n}: {s}");
        }
    }
}

#[tokio::test]
async fn converged_rerun_changes_nothing_and_starts_nothing() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    script_all(&c, &synced_gather(3, false));
    let (report, c) = run(&ctx, c, Mode::Install, false).await;
    assert_eq!(report.plan.operations(), 0, "{}", report.plan.render());
    // The converged re-run's SSH round trips per host (facts, the batched probe, the
    // host lock taken and released, then the component's read-only cluster checks).
    assert_eq!(
        kbz_testkit::round_trips(&c),
        concat!(
            "db1=3 db2=3 db3=3 k8s-m1=3 k8s-m2=3 k8s-m3=3 k8s-w1=3 k8s-w2=3 k8s-w3=3 ",
            "lb1=3 lb2=3 mq1=8 mq2=6 mq3=6"
        )
    );
    assert_eq!(
        (report.summary.changed, report.summary.cluster_changes),
        (0, 0),
        "{:?}",
        report.cluster_changes
    );
    // The users' session ran and reported no difference; nothing else mutating ran.
    assert_eq!(
        mutations(&c),
        [("mq1".to_string(), scripts::USERS.to_string())]
    );
    for n in NODES {
        assert!(host(&c, n).applied().is_empty(), "{n}");
        assert_eq!(host(&c, n).restarts(layout::CHECK_SERVICE), 0);
    }
}

#[tokio::test]
async fn a_changed_config_restarts_one_node_at_a_time() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    script_all(&c, &synced_gather(3, true));
    let (report, c) = run(&ctx, c, Mode::Install, false).await;
    let restarted: Vec<&str> = report
        .cluster_changes
        .iter()
        .map(|c| c.host.as_str())
        .collect();
    assert_eq!(restarted, NODES);
    // Each restart is followed by a wait for the full cluster before the next.
    let mut seq = Vec::new();
    for n in NODES {
        let ran = host(&c, n).ran();
        let r = ran
            .iter()
            .position(|s| s.starts_with(scripts::RESTART))
            .expect("restart");
        assert!(ran[r + 1..]
            .iter()
            .any(|s| s.starts_with(&format!("{} 3", scripts::WAIT_SYNCED))));
        seq.push(r);
    }
}

#[tokio::test]
async fn every_node_down_recovers_from_the_highest_seqno() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    // A power cut: every grastate says -1; InnoDB says mq2 has the last commit.
    script_all(&c, &down_gather(-1, false));
    for (n, seqno) in [("mq1", 10), ("mq2", 12), ("mq3", 11)] {
        host(&c, n).script(
            scripts::RECOVER,
            output(&format!("position={UUID}:{seqno}\n"), 0),
        );
    }
    let changes = cluster::converge(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect("recovered");
    assert_eq!(changes[0].kind, ClusterChangeKind::Bootstrap);
    assert_eq!(changes[0].host, "mq2");
    assert!(
        changes[0].detail.contains("mq2 seqno 12"),
        "{}",
        changes[0].detail
    );
    let joins: Vec<&str> = changes
        .iter()
        .filter(|c| c.kind == ClusterChangeKind::Join)
        .map(|c| c.host.as_str())
        .collect();
    assert_eq!(joins, ["mq1", "mq3"]);
    let boot = host(&c, "mq2")
        .ran()
        .into_iter()
        .find(|s| s.starts_with(scripts::BOOTSTRAP))
        .expect("bootstrap on mq2");
    assert!(boot.contains("safe_to_bootstrap: 1") && boot.contains("galera_new_cluster"));
    for n in ["mq1", "mq3"] {
        assert!(!host(&c, n)
            .ran()
            .iter()
            .any(|s| s.starts_with(scripts::BOOTSTRAP)));
    }

    // A clean shutdown's seqno in grastate.dat needs no recovery run; safe_to_bootstrap
    // breaks a tie.
    let c = fleet(&ctx, Some(&first));
    for (n, g) in [
        ("mq1", down_gather(20, false)),
        ("mq2", down_gather(20, true)),
        ("mq3", down_gather(19, false)),
    ] {
        host(&c, n).script(scripts::GATHER, output(&g, 0));
    }
    let changes =
        kbz_mariadb::cluster::recover_full_cluster(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
            .await
            .expect("recovered");
    assert_eq!(changes[0].host, "mq2");
    for n in NODES {
        assert!(!host(&c, n)
            .ran()
            .iter()
            .any(|s| s.starts_with(scripts::RECOVER)));
    }
}

#[tokio::test]
async fn recovery_refuses_while_a_node_runs_and_quorum_loss_is_e036() {
    let ctx = example_ctx();
    let c = fleet(&ctx, None);
    script_all(&c, &synced_gather(3, false));
    let e = cluster::recover_full_cluster(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect_err("a node runs");
    assert_eq!(e.code(), Code::E036);

    let c = fleet(&ctx, None);
    let np =
        synced_gather(1, false).replace("cluster_status=Primary", "cluster_status=non-Primary");
    host(&c, "mq1").script(scripts::GATHER, output(&np, 0));
    host(&c, "mq2").script(scripts::GATHER, output(&np, 0));
    host(&c, "mq3").script(scripts::GATHER, output(&down_gather(-1, false), 0));
    let e = cluster::converge(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect_err("no primary");
    assert_eq!(e.code(), Code::E036);
    assert!(mutations(&c).is_empty(), "{:?}", mutations(&c));
}

#[tokio::test]
async fn a_node_that_never_syncs_is_e038_naming_it() {
    let ctx = example_ctx();
    let ctx2 = ctx_with(|_, cfg| cfg.timeouts.readiness = 1);
    let c = fleet(&ctx, None);
    script_all(&c, &fresh_gather());
    host(&c, "mq2").script(scripts::WAIT_SYNCED, output("not synced: Joining", 1));
    let e = cluster::converge(&ctx2, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect_err("mq2 never syncs");
    assert_eq!(e.code(), Code::E038);
    assert!(format!("{e:?}").contains("mq2"));
    // mq3 was not started while mq2 had not joined.
    assert!(!host(&c, "mq3")
        .ran()
        .iter()
        .any(|s| s.starts_with(scripts::JOIN)));
}

#[tokio::test]
async fn dry_run_mutates_nothing() {
    let ctx = example_ctx();
    let c = fleet(&ctx, None);
    script_all(&c, &fresh_gather());
    let before: Vec<_> = NODES.iter().map(|n| host(&c, n).state()).collect();
    let (report, c) = run(&ctx, c, Mode::Install, true).await;
    assert!(report.plan.operations() > 0);
    for (i, n) in NODES.iter().enumerate() {
        assert_eq!(host(&c, n).state(), before[i], "{n}");
    }
    assert!(mutations(&c).is_empty(), "{:?}", mutations(&c));
}

#[tokio::test]
async fn uninstall_removes_what_install_added_and_keeps_the_data() {
    let ctx = example_ctx();
    let (_, first) = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    script_all(&c, &synced_gather(3, false));
    let (_, c) = run(&ctx, c, Mode::Uninstall, false).await;
    for n in NODES {
        let st = host(&c, n).state();
        for p in kbz_mariadb::UNINSTALLED_PACKAGES {
            assert!(!st.packages.contains(*p), "{n}: {p}");
        }
        for f in [
            layout::GALERA_CNF,
            layout::CHECK_CNF,
            layout::CLUSTERCHECK,
            layout::CHECK_UNIT,
        ] {
            assert!(!st.files.contains_key(f), "{n}: {f}");
        }
        let s = st.services.get(layout::CHECK_SERVICE);
        assert!(s.is_none_or(|s| !s.active && !s.enabled), "{n}");
    }
    assert!(mutations(&c).is_empty());
}
