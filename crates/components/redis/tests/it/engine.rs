//! FakeHost engine runs of module 6 on the example fleet: a fresh install converges (db1
//! bootstraps as master, db2 and db3 replicate, every Sentinel monitors db1); a converged
//! re-run changes nothing; after a simulated failover (the Sentinels name db2, the daemons
//! rewrote their own files) a re-run touches neither files nor replication; a rebuilt node
//! joins the promoted master; uninstall removes what install added; stuck waits are E038/E039.

use kbz_core::component::HostExec;
use kbz_core::engine::Mode;
use kbz_core::health::HealthStatus;
use kbz_core::{ClusterChangeKind, Context, Engine, RunOptions};
use kbz_errors::{Code, HasCode};
use kbz_redis::layout::{self, Layout};
use kbz_redis::observe::MasterSource;
use kbz_redis::{cluster, render, scripts, Redis};
use kbz_testkit::{host_execs, output};
use kbz_testkit::{FakeConnector, FakeHost};
use std::sync::Arc;

use crate::common::*;

const DB1: &str = "192.0.2.21";
const DB2: &str = "192.0.2.22";
const DB3: &str = "192.0.2.23";

/// A fleet for the example inventory with Debian's units for the Redis packages. When `from`
/// is given, every host starts with that fleet's state (a later run against the same hosts).
fn fleet(ctx: &Context, from: Option<&FakeConnector>) -> FakeConnector {
    let c = FakeConnector::debian_fleet(&ctx.inventory.hosts);
    for (name, h) in c.hosts() {
        h.package_units("redis-server", &["redis-server"]);
        h.package_units("redis-sentinel", &["redis-sentinel"]);
        // The daemons answer and the commands kbz sends succeed; tests script failures
        // (and the GATHER state) on top of these.
        for s in [
            scripts::PING,
            scripts::REPLICAOF,
            scripts::MONITOR,
            scripts::SENTINEL_SET,
            scripts::WAIT_REPLICATION,
            scripts::WAIT_SENTINELS,
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

/// Scripts the fresh-cluster answers on every Redis host.
fn script_fresh(c: &FakeConnector) {
    for n in ["db1", "db2", "db3"] {
        host(c, n).script(scripts::GATHER, output(&fresh_gather(), 0));
    }
}

/// Scripts a converged cluster whose master is `master` (by hostname).
fn script_converged(c: &FakeConnector, master: &str) {
    let ips = [("db1", DB1), ("db2", DB2), ("db3", DB3)];
    let m_ip = ips.iter().find(|(n, _)| *n == master).expect("master").1;
    let others: Vec<&str> = ips
        .iter()
        .filter(|(n, _)| *n != master)
        .map(|(_, ip)| *ip)
        .collect();
    for (n, _) in ips {
        let info = if n == master {
            master_info(&others)
        } else {
            replica_info(m_ip)
        };
        host(c, n).script(
            scripts::GATHER,
            output(&gather(&info, &sentinel_master(m_ip, 1), CKQUORUM_OK), 0),
        );
    }
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
) -> (kbz_core::RunReport, Arc<FakeConnector>) {
    let c = Arc::new(c);
    let engine = Engine::new(ctx.clone(), vec![Arc::new(Redis)], c.clone());
    let report = engine
        .run(&RunOptions {
            mode,
            ..RunOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    (report, c)
}

/// Installs on a fresh fleet and returns the fleet.
async fn install(ctx: &Context) -> Arc<FakeConnector> {
    install_report(ctx).await.1
}

/// Installs on a fresh fleet: the report and the fleet.
async fn install_report(ctx: &Context) -> (kbz_core::RunReport, Arc<FakeConnector>) {
    let c = fleet(ctx, None);
    script_fresh(&c);
    let (report, c) = run(ctx, c, Mode::Install).await;
    for n in ["db1", "db2", "db3"] {
        assert!(report.hosts[n].changed > 0, "{n}: {:?}", report.hosts[n]);
        assert!(report.hosts[n].failed.is_none());
    }
    assert!(!report.hosts.contains_key("lb1") || report.hosts["lb1"].changed == 0);
    (report, c)
}

#[tokio::test]
async fn fresh_install_bootstraps_db1_as_master() {
    let ctx = example_ctx();
    let (report, c) = install_report(&ctx).await;
    // The report counts what the cluster step did: two REPLICAOF, three SENTINEL MONITOR.
    let kinds: Vec<(String, ClusterChangeKind)> = report
        .cluster_changes
        .iter()
        .map(|c| (c.host.clone(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("db2".to_string(), ClusterChangeKind::ReplicaOf),
            ("db3".to_string(), ClusterChangeKind::ReplicaOf),
            ("db1".to_string(), ClusterChangeKind::SentinelMonitor),
            ("db2".to_string(), ClusterChangeKind::SentinelMonitor),
            ("db3".to_string(), ClusterChangeKind::SentinelMonitor),
        ]
    );
    assert!(report
        .cluster_changes
        .iter()
        .all(|c| c.component == "redis"));
    // What each change replaced reads as words, not a Rust debug structure.
    let details: Vec<&str> = report
        .cluster_changes
        .iter()
        .map(|c| c.detail.as_str())
        .collect();
    assert_eq!(
        details[0],
        format!("REPLICAOF {DB1} (was master with 0 replica(s) online)")
    );
    assert_eq!(
        details[2],
        format!("SENTINEL MONITOR kbz {DB1} (was not monitoring)")
    );
    assert_eq!(report.summary.cluster_changes, 5);
    assert_eq!(report.hosts["db1"].cluster_changed, 1);
    assert_eq!(report.hosts["db2"].cluster_changed, 2);
    for n in ["db1", "db2", "db3"] {
        let h = host(&c, n);
        let st = h.state();
        for p in ["redis-server", "redis-sentinel", "redis-tools"] {
            assert!(st.packages.contains(p), "{n}: {p}");
        }
        for s in ["redis-server", "redis-sentinel"] {
            let u = st.services.get(s).expect("unit");
            assert!(u.enabled && u.active, "{n}: {s}");
        }
        let conf = &st.files[layout::REDIS_KBZ];
        assert_eq!((conf.mode, conf.owner.as_str()), (0o640, "root:redis"));
        let pass = &st.files[layout::REDIS_PASS];
        assert_eq!((pass.mode, pass.owner.as_str()), (0o600, "root:root"));
        // The main files are the daemons': written by the guarded command, not as files.
        assert!(!st.files.contains_key(layout::REDIS_MAIN));
        assert!(st.done_commands.contains("redis-main-conf"));
        assert!(st.done_commands.contains("sentinel-main-conf"));
    }
    let muts = ran_mutations(&c);
    let replicaof: Vec<&str> = muts
        .iter()
        .filter(|(_, s)| s == scripts::REPLICAOF)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        replicaof,
        ["db2", "db3"],
        "only the replicas are pointed at db1"
    );
    for n in ["db2", "db3"] {
        assert!(host(&c, n)
            .ran()
            .iter()
            .any(|s| s.contains(&format!("REPLICAOF {DB1} 6379"))));
    }
    for n in ["db1", "db2", "db3"] {
        assert!(
            host(&c, n)
                .ran()
                .iter()
                .any(|s| s.contains(&format!("SENTINEL MONITOR kbz {DB1} 6379 2"))),
            "{n} monitors db1"
        );
    }
    // The waits ran on the master.
    let db1 = host(&c, "db1").ran();
    assert!(db1.iter().any(|s| s.starts_with(scripts::WAIT_REPLICATION)));
    assert!(db1.iter().any(|s| s.starts_with(scripts::WAIT_SENTINELS)));
}

#[tokio::test]
async fn converged_rerun_changes_nothing_and_restarts_nothing() {
    let ctx = example_ctx();
    let first = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    script_converged(&c, "db1");
    let (report, c) = run(&ctx, c, Mode::Install).await;
    assert_eq!(report.plan.operations(), 0, "{}", report.plan.render());
    // The converged re-run's SSH round trips per host (facts, the batched probe, the
    // host lock taken and released, then the component's read-only cluster checks).
    assert_eq!(
        kbz_testkit::round_trips(&c),
        concat!(
            "db1=8 db2=6 db3=6 k8s-m1=3 k8s-m2=3 k8s-m3=3 k8s-w1=3 k8s-w2=3 k8s-w3=3 ",
            "lb1=3 lb2=3 mq1=3 mq2=3 mq3=3"
        )
    );
    assert_eq!(
        (report.summary.changed, report.summary.cluster_changes),
        (0, 0),
        "{:?}",
        report.cluster_changes
    );
    for (name, h) in c.hosts() {
        assert_eq!(h.restarts("redis-server"), 0, "{name}");
        assert_eq!(h.restarts("redis-sentinel"), 0, "{name}");
        assert!(h.applied().is_empty(), "{name}: {:?}", h.applied());
    }
    assert!(ran_mutations(&c).is_empty(), "{:?}", ran_mutations(&c));
}

#[tokio::test]
async fn rerun_after_a_failover_leaves_replication_and_files_alone() {
    let ctx = example_ctx();
    let first = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    // Sentinel promoted db2 and rewrote the daemons' own files (as Redis and Sentinel do).
    for (n, role) in [("db1", "replica"), ("db2", "master"), ("db3", "replica")] {
        let h = host(&c, n);
        let l = Layout::debian();
        let hx = ctx.inventory.host(n).expect("host").clone();
        let mut redis_main = render::redis_main_stub(&l, &hx).expect("stub");
        redis_main.push_str(
            "\n# Generated by CONFIG REWRITE\nmasterauth \"redis_password-PLACEHOLDER\"\n",
        );
        if role == "replica" {
            redis_main.push_str(&format!("replicaof {DB2} 6379\n"));
        }
        let mut sentinel_main = render::sentinel_main_stub(&l, &hx).expect("stub");
        sentinel_main.push_str(&format!(
            "\n# Generated by CONFIG REWRITE\nsentinel myid {}\nsentinel monitor kbz {DB2} 6379 2\nsentinel config-epoch kbz 1\nsentinel known-replica kbz {DB1} 6379\nsentinel known-replica kbz {DB3} 6379\n",
            render::sentinel_myid("example", n)
        ));
        h.with_state(|s| {
            for (p, text) in [
                (layout::REDIS_MAIN, &redis_main),
                (layout::SENTINEL_MAIN, &sentinel_main),
            ] {
                s.files.insert(
                    p.into(),
                    kbz_testkit::fake::FakeFile {
                        content: text.as_bytes().to_vec(),
                        mode: 0o640,
                        owner: "redis:redis".into(),
                    },
                );
            }
        });
    }
    let before: Vec<_> = ["db1", "db2", "db3"]
        .iter()
        .map(|n| host(&c, n).state())
        .collect();
    script_converged(&c, "db2");
    let (report, c) = run(&ctx, c, Mode::Install).await;
    assert_eq!(report.plan.operations(), 0, "{}", report.plan.render());
    assert_eq!(
        report.summary.cluster_changes, 0,
        "{:?}",
        report.cluster_changes
    );
    for (i, n) in ["db1", "db2", "db3"].iter().enumerate() {
        let h = host(&c, n);
        assert_eq!(h.restarts("redis-server"), 0, "{n}");
        assert_eq!(h.restarts("redis-sentinel"), 0, "{n}");
        assert_eq!(h.state(), before[i], "{n}: state changed");
        for s in h.ran() {
            assert!(
                !s.contains("REPLICAOF") && !s.contains("SLAVEOF"),
                "{n} ran {s}"
            );
            assert!(
                !s.contains("SENTINEL MONITOR") && !s.contains("SENTINEL SET"),
                "{n} ran {s}"
            );
            assert!(!s.contains("CONFIG REWRITE"), "{n} ran {s}");
        }
    }
    // The waits check against the promoted master, not the bootstrap one.
    let db2 = host(&c, "db2").ran();
    assert!(db2
        .iter()
        .any(|s| s.starts_with(scripts::WAIT_SENTINELS) && s.contains(&format!("= {DB2} ]"))));
}

fn hostexecs(ctx: &Context, c: &FakeConnector) -> Vec<HostExec> {
    host_execs(c, &redis_hosts(ctx))
}

#[tokio::test]
async fn a_rebuilt_node_joins_the_promoted_master() {
    let ctx = example_ctx();
    let c = fleet(&ctx, None);
    // db2 was promoted earlier; db3 was reinstalled from scratch.
    host(&c, "db1").script(
        scripts::GATHER,
        output(
            &gather(&replica_info(DB2), &sentinel_master(DB2, 1), CKQUORUM_OK),
            0,
        ),
    );
    host(&c, "db2").script(
        scripts::GATHER,
        output(
            &gather(&master_info(&[DB1]), &sentinel_master(DB2, 1), CKQUORUM_OK),
            0,
        ),
    );
    host(&c, "db3").script(scripts::GATHER, output(&fresh_gather(), 0));
    let outcome = cluster::converge(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect("converge");
    assert_eq!(outcome.master.to_string(), DB2);
    assert_eq!(outcome.source, MasterSource::Sentinels);
    assert_eq!(outcome.replicaof, ["db3"]);
    assert_eq!(outcome.monitored, ["db3"]);
    let db3 = host(&c, "db3").ran();
    assert!(db3
        .iter()
        .any(|s| s.contains(&format!("REPLICAOF {DB2} 6379"))));
    assert!(db3
        .iter()
        .any(|s| s.contains(&format!("SENTINEL MONITOR kbz {DB2} 6379 2"))));
    for n in ["db1", "db2"] {
        assert!(
            !host(&c, n)
                .ran()
                .iter()
                .any(|s| scripts::MUTATING.iter().any(|m| s.starts_with(m))),
            "{n} was changed"
        );
    }
}

fn quick(ctx: &Context) -> Context {
    let mut cfg = (*ctx.config).clone();
    cfg.timeouts.readiness = 1;
    Context::new((*ctx.inventory).clone(), cfg, (*ctx.secrets).clone())
}

#[tokio::test]
async fn sentinels_that_never_agree_fail_with_e039() {
    let ctx = quick(&example_ctx());
    let c = fleet(&ctx, None);
    script_converged(&c, "db1");
    host(&c, "db1").script(
        scripts::WAIT_SENTINELS,
        output("sentinel 192.0.2.23: NOQUORUM 1 usable Sentinels", 1),
    );
    let e = cluster::converge(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect_err("no quorum");
    assert_eq!(e.code(), Code::E039, "{e}");
    assert!(e.to_string().contains("NOQUORUM"), "{e}");
    // A cluster-state failure, blamed on the node the check ran on, with its fix.
    assert_eq!(e.host(), Some("db1"), "{e:?}");
    assert!(e.hint().is_some_and(|h| h.contains("CKQUORUM")), "{e:?}");
}

#[tokio::test]
async fn replicas_that_never_link_fail_with_e038() {
    let ctx = quick(&example_ctx());
    let c = fleet(&ctx, None);
    script_converged(&c, "db1");
    host(&c, "db1").script(
        scripts::WAIT_REPLICATION,
        output(
            "192.0.2.22: not streaming from 192.0.2.21: master_link_status:down",
            1,
        ),
    );
    let e = cluster::converge(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect_err("no link");
    assert_eq!(e.code(), Code::E038, "{e}");
}

#[tokio::test]
async fn two_masters_with_replicas_are_refused_not_resolved() {
    let ctx = example_ctx();
    let c = fleet(&ctx, None);
    let none = "ERR No such master with that name\n";
    host(&c, "db1").script(
        scripts::GATHER,
        output(&gather(&master_info(&[DB3]), none, ""), 0),
    );
    host(&c, "db2").script(
        scripts::GATHER,
        output(&gather(&master_info(&[DB3]), none, ""), 0),
    );
    host(&c, "db3").script(
        scripts::GATHER,
        output(&gather(&replica_info(DB1), none, ""), 0),
    );
    let e = cluster::converge(&ctx, &hostexecs(&ctx, &c), &Layout::debian())
        .await
        .expect_err("split brain");
    assert_eq!(e.code(), Code::E038, "{e}");
    assert!(ran_mutations(&c).is_empty());
}

#[tokio::test]
async fn health_reports_roles_links_and_sentinel_agreement() {
    let ctx = example_ctx();
    let c = fleet(&ctx, None);
    script_converged(&c, "db2");
    let checks = cluster::health(&ctx, &hostexecs(&ctx, &c), &Layout::debian()).await;
    assert_eq!(checks.len(), 7);
    assert!(checks.iter().all(|c| c.is_ok()), "{checks:#?}");
    let db2 = checks
        .iter()
        .find(|c| c.host == "db2" && c.check == "redis node")
        .expect("db2");
    assert_eq!(db2.detail, "master, 2 replica(s) online");

    // db3's link is down and its Sentinel lost quorum (scripted over the converged answers).
    let c = fleet(&ctx, None);
    script_converged(&c, "db2");
    let down = replica_info(DB2).replace("master_link_status:up", "master_link_status:down");
    host(&c, "db3").script(
        scripts::GATHER,
        output(
            &gather(
                &down,
                &sentinel_master(DB2, 1),
                "NOQUORUM 1 usable Sentinels",
            ),
            0,
        ),
    );
    let checks = cluster::health(&ctx, &hostexecs(&ctx, &c), &Layout::debian()).await;
    let bad: Vec<(&str, Option<Code>, HealthStatus)> = checks
        .iter()
        .filter(|c| !c.is_ok())
        .map(|c| (c.host.as_str(), c.code, c.status))
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad
        .iter()
        .all(|(h, _, s)| *h == "db3" && *s == HealthStatus::Degraded));
    assert!(bad.iter().any(|(_, c, _)| *c == Some(Code::E038)));
    assert!(bad.iter().any(|(_, c, _)| *c == Some(Code::E039)));
}

#[tokio::test]
async fn uninstall_removes_services_packages_and_kbz_files() {
    let ctx = example_ctx();
    let first = install(&ctx).await;
    let c = fleet(&ctx, Some(&first));
    let (_, c) = run(&ctx, c, Mode::Uninstall).await;
    for n in ["db1", "db2", "db3"] {
        let st = host(&c, n).state();
        for p in kbz_redis::UNINSTALLED_PACKAGES {
            assert!(!st.packages.contains(*p), "{n}: {p}");
        }
        assert!(
            st.packages.contains("redis-tools"),
            "{n}: redis-tools keeps the data"
        );
        assert!(!st.services.contains_key("redis-server"), "{n}");
        assert!(!st.services.contains_key("redis-sentinel"), "{n}");
        let left: Vec<&String> = st
            .files
            .keys()
            .filter(|p| p.contains("redis") || p.contains("kbz"))
            .collect();
        assert!(left.is_empty(), "{n}: {left:?}");
    }
}
