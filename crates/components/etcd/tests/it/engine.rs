//! Engine runs of the etcd component on fake Debian hosts: a fresh fleet converges, a second
//! run changes nothing, and a cluster that never reaches quorum fails with E036 and is rolled
//! back to the exact prior state.

use kbz_core::{Component, Config, Context, Engine, RunOptions, Secrets};
use kbz_errors::{Code, HasCode};
use kbz_etcd::{Etcd, DATA_DIR, DROPIN_FILE, ENV_FILE};
use kbz_testkit::FakeConnector;
use kbz_testkit::{db_inventory, fake_engine, host_execs, output};
use std::sync::Arc;

/// db1-db3 at 192.0.2.21-23.
const IP_PREFIX: &str = "192.0.2.2";

const HEALTHY: &str = "\
http://192.0.2.21:2379 is healthy: successfully committed proposal: took = 4.6ms
http://192.0.2.22:2379 is healthy: successfully committed proposal: took = 4.7ms
http://192.0.2.23:2379 is healthy: successfully committed proposal: took = 5.9ms
";

const MEMBERS: &str = "\
14d8f6338ed85f35, started, db2, http://192.0.2.22:2380, http://192.0.2.22:2379, false
52a03a2d90fd8ab5, started, db1, http://192.0.2.21:2380, http://192.0.2.21:2379, false
53f3e24528a7f24c, started, db3, http://192.0.2.23:2380, http://192.0.2.23:2379, false
";

const NO_QUORUM: &str = "\
http://192.0.2.23:2379 is unhealthy: failed to commit proposal: context deadline exceeded
http://192.0.2.22:2379 is unhealthy: failed to commit proposal: context deadline exceeded
http://192.0.2.21:2379 is unhealthy: failed to commit proposal: context deadline exceeded
Error: unhealthy cluster
";

fn setup(health: &str, members: &str) -> (Engine, Arc<FakeConnector>) {
    let mut cfg = Config::default();
    cfg.cluster.name = "example".into();
    cfg.timeouts.readiness = 1;
    let ctx = Context::new(
        db_inventory(IP_PREFIX),
        cfg,
        Secrets::placeholders(Etcd.secret_names()),
    );
    let (engine, fleet) = fake_engine(ctx, vec![Arc::new(Etcd)]);
    for (_, h) in fleet.hosts() {
        // Debian's postinst enables and starts etcd.
        h.package_units("etcd-server", &["etcd"]);
        let status = if health == HEALTHY { 0 } else { 1 };
        h.script("endpoint health --cluster", output(health, status));
        h.script("member list", output(members, 0));
    }
    (engine, fleet)
}

#[tokio::test]
async fn fresh_fleet_converges_and_rerun_changes_nothing() {
    let (engine, fleet) = setup(HEALTHY, MEMBERS);
    let first = engine.run(&RunOptions::default()).await.expect("first run");
    assert!(first.changed() > 0);
    for (name, h) in fleet.hosts() {
        let s = h.state();
        assert!(s.packages.contains("etcd-server") && s.packages.contains("etcd-client"));
        let svc = s.services.get("etcd").expect("etcd unit");
        assert!(svc.enabled && svc.active, "{name}: etcd not running");
        let env = String::from_utf8_lossy(&s.files[ENV_FILE].content).into_owned();
        assert!(env.contains(&format!("ETCD_NAME=\"{name}\"")), "{env}");
        assert!(env.contains(&format!("ETCD_DATA_DIR=\"{DATA_DIR}\"")));
        assert!(s.files.contains_key(DROPIN_FILE));
        // The environment was written before the package was installed.
        let applied = h.applied();
        let write = applied
            .iter()
            .position(|o| o.describe().starts_with(&format!("write {ENV_FILE} ")))
            .expect("env written");
        let install = applied
            .iter()
            .position(|o| o.describe().starts_with("install packages"))
            .expect("installed");
        assert!(write < install, "{name}: {applied:?}");
    }
    let db1 = fleet.host("db1").expect("db1");
    assert!(
        db1.ran()
            .iter()
            .any(|s| s.contains("endpoint health --cluster")),
        "readiness was never checked"
    );
    let restarts: Vec<u64> = fleet.hosts().map(|(_, h)| h.restarts("etcd")).collect();
    kbz_testkit::reset_round_trips(&fleet);
    let second = engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.changed(), 0, "{}", second.plan.render());
    // The converged re-run's SSH round trips per host (facts, the batched probe, the
    // host lock taken and released, then the component's read-only cluster checks).
    assert_eq!(kbz_testkit::round_trips(&fleet), "db1=6 db2=4 db3=4");
    for ((name, h), before) in fleet.hosts().zip(restarts) {
        assert_eq!(
            h.restarts("etcd"),
            before,
            "{name}: etcd restarted by the re-run"
        );
    }
}

#[tokio::test]
async fn no_quorum_is_e036_and_rolls_back() {
    let (engine, fleet) = setup(NO_QUORUM, MEMBERS);
    let before = fleet.states();
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("no quorum");
    assert_eq!(err.code(), Code::E036, "{err}");
    assert!(err.to_string().contains("0 of 3 members healthy"), "{err}");
    kbz_testkit::assert_rolled_back(&err);
    assert_eq!(before, fleet.states(), "rollback did not restore the hosts");
}

#[tokio::test]
async fn foreign_member_list_is_a_bootstrap_error() {
    let stale = "\
52a03a2d90fd8ab5, started, db1, http://192.0.2.21:2380, http://192.0.2.21:2379, false
";
    let (engine, _) = setup(HEALTHY, stale);
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("member mismatch");
    assert_eq!(err.code(), Code::E035, "{err}");
    assert!(err.to_string().contains("db2 is not a member"), "{err}");
}

#[tokio::test]
async fn health_reports_each_member_quorum_and_member_list() {
    let (engine, fleet) = setup(HEALTHY, MEMBERS);
    engine.run(&RunOptions::default()).await.expect("install");
    let ctx = Context::new(
        db_inventory(IP_PREFIX),
        Config::default(),
        Secrets::in_memory(),
    );
    for (i, name) in ["db1", "db2", "db3"].iter().enumerate() {
        let url = format!("http://{IP_PREFIX}{}:2379", i + 1);
        let health = format!("{url} is healthy: successfully committed proposal: took = 2.1ms\n");
        let status = format!(
            r#"[{{"Endpoint":"{url}","Status":{{"header":{{"cluster_id":9,"member_id":{},"revision":5,"raft_term":2}},"version":"3.4.23","dbSize":20480,"leader":2,"raftIndex":9,"raftTerm":2}}}}]"#,
            i + 1
        );
        let answer = kbz_core::health::render_output(&[
            ("etcd", "health", &health, 0),
            ("etcd", "status", &status, 0),
        ]);
        fleet
            .host(name)
            .expect("host")
            .script("# kbz-health", kbz_testkit::output(&answer, 0));
    }
    let hx = host_execs(&fleet, &ctx.inventory.hosts);
    let checks = kbz_core::health_run::check_component(&ctx, &Etcd, &hx).await;
    assert_eq!(checks.len(), 5, "{checks:#?}");
    assert!(checks.iter().all(|c| c.is_ok()), "{checks:#?}");
    let leader = checks
        .iter()
        .find(|c| c.check == "one leader")
        .expect("leader");
    assert!(leader.detail.starts_with("leader db2"), "{}", leader.detail);
    assert!(checks.iter().any(|c| c.check == "quorum"));
}
