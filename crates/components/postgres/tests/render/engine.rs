//! Engine runs of the postgres component on fake Debian hosts: a fresh fleet converges leader
//! first, a second run changes nothing and restarts nothing, a replica that never streams is
//! E038, and a member that never becomes ready stops the rollout before the next host.

use kbz_core::engine::RollbackOutcome;
use kbz_core::{
    Component, Config, Context, Engine, EngineError, Host, Inventory, Output, Role, RunOptions,
    Secrets,
};
use kbz_errors::{Code, HasCode};
use kbz_exec::FakeConnector;
use kbz_postgres::{Postgres, CONFIG_PATH, CREATECLUSTER_PATH};
use std::sync::Arc;

fn inventory() -> Inventory {
    Inventory {
        path: "servers.tsv".into(),
        hosts: (1..=3)
            .map(|i| {
                Host::new(
                    &format!("db{i}"),
                    format!("192.0.2.2{i}").parse().expect("ip"),
                    &[Role::Etcd, Role::Postgres],
                )
            })
            .collect(),
    }
}

fn out(text: &str, status: i32) -> Output {
    Output {
        status,
        stdout: text.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

const LIST: &str = r#"[{"Cluster": "example", "Member": "db1", "Host": "192.0.2.21", "Role": "Leader", "State": "running", "TL": 1}, {"Cluster": "example", "Member": "db2", "Host": "192.0.2.22", "Role": "Sync Standby", "State": "streaming", "TL": 1, "Lag in MB": 0}, {"Cluster": "example", "Member": "db3", "Host": "192.0.2.23", "Role": "Replica", "State": "streaming", "TL": 1, "Lag in MB": 0}]"#;

const STREAMING: &str = "db2|streaming|sync\ndb3|streaming|async\n";

fn setup(replication: &str) -> (Engine, Arc<FakeConnector>) {
    let inv = inventory();
    let fleet = FakeConnector::debian_fleet(&inv.hosts);
    for (_, h) in fleet.hosts() {
        // Debian enables patroni.service on install (it starts once its config exists).
        h.package_units("patroni", &["patroni"]);
        h.script("list -f json", out(LIST, 0));
        h.script("pg_stat_replication", out(replication, 0));
    }
    let fleet = Arc::new(fleet);
    let mut cfg = Config::default();
    cfg.cluster.name = "example".into();
    cfg.cluster.subnet = Some("192.0.2.0/24".parse().expect("net"));
    cfg.timeouts.readiness = 1;
    let ctx = Context::new(inv, cfg, Secrets::placeholders(Postgres.secret_names()));
    let comps: Vec<Arc<dyn Component>> = vec![Arc::new(Postgres)];
    (Engine::new(ctx, comps, fleet.clone()), fleet)
}

#[tokio::test]
async fn fresh_fleet_converges_and_rerun_changes_nothing() {
    let (engine, fleet) = setup(STREAMING);
    let first = engine.run(&RunOptions::default()).await.expect("first run");
    assert!(first.changed() > 0);
    for (name, h) in fleet.hosts() {
        let s = h.state();
        for p in ["postgresql-15", "patroni", "python3-etcd", "curl"] {
            assert!(s.packages.contains(p), "{name}: {p} missing");
        }
        let cfg = &s.files[CONFIG_PATH];
        assert_eq!((cfg.mode, cfg.owner.as_str()), (0o600, "postgres:postgres"));
        let text = String::from_utf8_lossy(&cfg.content).into_owned();
        assert!(text.contains(&format!("name: \"{name}\"")), "{text}");
        assert!(s.files.contains_key(CREATECLUSTER_PATH));
        assert_eq!(
            s.dirs.get("/var/lib/postgresql/15/kbz"),
            Some(&(0o700, "postgres:postgres".to_string()))
        );
        let svc = s.services.get("patroni").expect("patroni unit");
        assert!(svc.enabled && svc.active, "{name}: patroni not running");
        // The createcluster drop-in is in place before the packages arrive.
        let applied = h.applied();
        let pos = |p: &str| {
            applied
                .iter()
                .position(|o| o.describe().starts_with(p))
                .unwrap_or_else(|| panic!("{name}: no `{p}` in {applied:?}"))
        };
        assert!(pos(&format!("write {CREATECLUSTER_PATH} ")) < pos("install packages"));
        // Each member was checked for readiness on its own REST address.
        let ip = format!("192.0.2.2{}", &name[2..]);
        assert!(
            h.ran()
                .iter()
                .any(|s| s.contains(&format!("'http://{ip}:8008'/primary"))),
            "{name}: no readiness check"
        );
    }
    let second = engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.changed(), 0, "{}", second.plan.render());
    for (name, h) in fleet.hosts() {
        assert_eq!(h.restarts("patroni"), 0, "{name}: patroni restarted");
    }
}

#[tokio::test]
async fn replica_not_streaming_is_e038_and_rolls_back() {
    let (engine, fleet) = setup("db2|streaming|sync\n");
    let before: Vec<_> = fleet.hosts().map(|(_, h)| h.state()).collect();
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("db3 not streaming");
    assert_eq!(err.code(), Code::E038, "{err}");
    assert!(
        err.to_string()
            .contains("db3 is not connected to the primary"),
        "{err}"
    );
    match &err {
        EngineError::Failed { rollback, .. } => assert_eq!(*rollback, RollbackOutcome::RolledBack),
        e => panic!("unexpected {e:?}"),
    }
    let after: Vec<_> = fleet.hosts().map(|(_, h)| h.state()).collect();
    assert_eq!(before, after, "rollback did not restore the hosts");
}

#[tokio::test]
async fn members_are_rolled_out_one_at_a_time() {
    let (engine, fleet) = setup(STREAMING);
    let db2 = fleet.host("db2").expect("db2");
    // db2's Patroni never serves: the rollout must stop there, before db3 is touched.
    db2.script(
        "/primary",
        out(
            "Patroni at http://192.0.2.22:8008 reports neither a primary nor a running replica\n",
            1,
        ),
    );
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("db2 never ready");
    assert_eq!(err.code(), Code::E031, "{err}");
    assert!(err.to_string().contains("db2"), "{err}");
    let db3 = fleet.host("db3").expect("db3");
    assert!(db3.applied().is_empty(), "db3 changed before db2 was ready");
}

#[tokio::test]
async fn first_member_that_never_leads_is_a_bootstrap_error() {
    let (engine, fleet) = setup(STREAMING);
    fleet.host("db1").expect("db1").script(
        "/primary",
        out(
            "Patroni at http://192.0.2.21:8008 reports neither a primary nor a running replica\n",
            1,
        ),
    );
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("db1 never leads");
    assert_eq!(err.code(), Code::E035, "{err}");
}

#[tokio::test]
async fn health_reports_members_and_the_cluster() {
    let (engine, fleet) = setup(STREAMING);
    engine.run(&RunOptions::default()).await.expect("install");
    let inv = inventory();
    let mut cfg = Config::default();
    cfg.cluster.subnet = Some("192.0.2.0/24".parse().expect("net"));
    let ctx = Context::new(
        inv.clone(),
        cfg,
        Secrets::placeholders(Postgres.secret_names()),
    );
    let hosts: Vec<_> = inv
        .hosts
        .iter()
        .map(|h| kbz_core::component::HostExec {
            host: h.clone(),
            exec: fleet.host(&h.hostname).expect("fake") as Arc<dyn kbz_core::Executor>,
        })
        .collect();
    let checks = Postgres.health(&ctx, &hosts).await;
    assert_eq!(checks.len(), 4, "{checks:?}");
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    let cluster = checks
        .iter()
        .find(|c| c.check == "patroni cluster")
        .expect("cluster");
    assert_eq!(cluster.detail, "leader db1, every replica streaming");
}
