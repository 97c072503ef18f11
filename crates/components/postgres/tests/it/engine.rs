//! Engine runs of the postgres component on fake Debian hosts: a fresh fleet converges leader
//! first, a second run changes nothing and restarts nothing, a replica that never streams is
//! E038, and a member that never becomes ready stops the rollout before the next host.

use kbz_core::resource::Op;
use kbz_core::{Component, Config, Context, Engine, RunOptions, Secrets};
use kbz_errors::{Code, HasCode};
use kbz_postgres::{Postgres, CONFIG_PATH, CREATECLUSTER_PATH};
use kbz_testkit::FakeConnector;
use kbz_testkit::{db_inventory, fake_engine, host_execs, output};
use std::sync::Arc;

/// db1-db3 at 192.0.2.21-23.
const IP_PREFIX: &str = "192.0.2.2";

const LIST: &str = r#"{"members": [{"name": "db1", "role": "leader", "state": "running", "host": "192.0.2.21", "port": 5432, "timeline": 1}, {"name": "db2", "role": "sync_standby", "state": "streaming", "host": "192.0.2.22", "port": 5432, "timeline": 1, "lag": 0}, {"name": "db3", "role": "replica", "state": "streaming", "host": "192.0.2.23", "port": 5432, "timeline": 1, "lag": 0}]}"#;

const STREAMING: &str = "db2|streaming|sync\ndb3|streaming|async\n";

const WHEEL: &[u8] = b"not really a wheel";

/// The engine, the fleet, and the directory of the test wheel and the download cache
/// (removed when dropped, also on failure).
fn setup(replication: &str) -> (Engine, Arc<FakeConnector>, tempfile::TempDir) {
    let wheel_dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::default();
    cfg.cluster.name = "example".into();
    cfg.cluster.subnet = Some("192.0.2.0/24".parse().expect("net"));
    cfg.timeouts.readiness = 1;
    // The pinned wheel, served from a controller file (a real pip download is the lab's).
    let wheel = wheel_dir.path().join("patroni-test.whl");
    std::fs::write(&wheel, WHEEL).expect("wheel");
    cfg.artifacts.insert(
        "patroni".into(),
        kbz_core::artifact::ArtifactOverride {
            version: kbz_postgres::DEFAULT_PATRONI_VERSION.into(),
            sha256: kbz_core::shell::sha256_hex(WHEEL),
            source: Some(format!("file://{}", wheel.display())),
        },
    );
    let ctx = Context::new(
        db_inventory(IP_PREFIX),
        cfg,
        Secrets::placeholders(Postgres.secret_names()),
    );
    let (engine, fleet) = fake_engine(ctx, vec![Arc::new(Postgres)]);
    let cache = kbz_exec::DownloadCache::new(wheel_dir.path().join("cache")).expect("cache");
    let engine = engine.with_artifacts(Arc::new(cache));
    for (_, h) in fleet.hosts() {
        // Debian enables patroni.service on install (it starts once its config exists).
        h.package_units("patroni", &["patroni"]);
        h.script(":8008/cluster", output(LIST, 0));
        h.script("pg_stat_replication", output(replication, 0));
        // Nothing kept from an earlier install: inventory order.
        h.script(
            "# kbz-postgres roll order",
            output("patroni=inactive\ndata=none\ntli=\n", 0),
        );
        // psql's command tags when the application role and database are created.
        h.script(
            kbz_postgres::APP_SETUP_SCRIPT,
            output("SET\nSET\nSET\nCREATE ROLE\nCREATE DATABASE\nREVOKE\n", 0),
        );
    }
    // Each member's readiness check after its rolling change: db1 leads, the others stream.
    for (name, answer) in [
        ("db1", "primary\n"),
        ("db2", "replica streaming\n"),
        ("db3", "replica streaming\n"),
    ] {
        fleet
            .host(name)
            .expect("db")
            .script("/primary", output(answer, 0));
    }
    (engine, fleet, wheel_dir)
}

#[tokio::test]
async fn fresh_fleet_converges_and_rerun_changes_nothing() {
    let (engine, fleet, _wheel_dir) = setup(STREAMING);
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
    // The first run may (re)start Patroni once: the unit's drop-in and the pinned release
    // arrive in it. The converged re-run restarts nothing.
    let restarts: Vec<u32> = fleet
        .hosts()
        .map(|(_, h)| h.restarts("patroni") as u32)
        .collect();
    assert!(restarts.iter().all(|r| *r <= 1), "{restarts:?}");
    // The application role and database were created once, on the leader, by a psql that
    // read the password on stdin (never on its command line).
    let created: Vec<String> = first
        .cluster_changes
        .iter()
        .map(|c| format!("{} {}", c.host, c.detail))
        .collect();
    assert_eq!(
        created,
        [
            "db1 application role app (login, password from the secrets file)",
            "db1 application database app owned by app",
        ]
    );
    let db1 = fleet.host("db1").expect("db1");
    assert!(db1
        .ran()
        .iter()
        .any(|s| s == kbz_postgres::APP_SETUP_SCRIPT));
    for (name, h) in fleet.hosts() {
        for s in h.ran() {
            assert!(!s.contains("PLACEHOLDER"), "{name}: a secret in {s}");
        }
    }
    // Once they exist psql creates nothing: the re-run reports no cluster change.
    for (_, h) in fleet.hosts() {
        h.script(kbz_postgres::APP_SETUP_SCRIPT, output("SET\nSET\nSET\n", 0));
    }
    kbz_testkit::reset_round_trips(&fleet);
    let second = engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.changed(), 0, "{}", second.plan.render());
    // The converged re-run's SSH round trips per host (facts, the batched probe, the
    // host lock taken and released, then the component's read-only cluster checks).
    assert_eq!(kbz_testkit::round_trips(&fleet), "db1=7 db2=4 db3=4");
    assert!(
        second.cluster_changes.is_empty(),
        "{:?}",
        second.cluster_changes
    );
    for ((name, h), before) in fleet.hosts().zip(restarts) {
        assert_eq!(
            h.restarts("patroni") as u32,
            before,
            "{name}: patroni restarted"
        );
    }
}

#[tokio::test]
async fn replica_not_streaming_is_e038_and_rolls_back() {
    let (engine, fleet, _wheel_dir) = setup("db2|streaming|sync\n");
    let before = fleet.states();
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
    kbz_testkit::assert_rolled_back(&err);
    assert_eq!(before, fleet.states(), "rollback did not restore the hosts");
}

/// Only the packages-first phase touched the host (the createcluster drop-in its packages
/// need and their install, every host at once before the roll) and the rollback undid it.
fn packages_first_only(applied: &[Op]) -> bool {
    applied.iter().all(|o| match o {
        Op::InstallPackages { .. } | Op::RemovePackages { .. } => true,
        Op::WriteFile { path, .. } | Op::RemoveFile { path } => path == CREATECLUSTER_PATH,
        _ => false,
    }) && applied
        .iter()
        .any(|o| matches!(o, Op::InstallPackages { .. }))
}

#[tokio::test]
async fn members_are_rolled_out_one_at_a_time() {
    let (engine, fleet, _wheel_dir) = setup(STREAMING);
    let db2 = fleet.host("db2").expect("db2");
    // db2's Patroni never serves: the rollout must stop there, before db3 is touched.
    db2.script(
        "/primary",
        output(
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
    assert!(
        packages_first_only(&db3.applied()),
        "db3 changed before db2 was ready: {:?}",
        db3.applied()
    );
}

/// Kept data (an uninstall keeps the data directories): the last primary, db2, is rolled
/// first; db1, rolled next, never serves, so db3 is never touched and db2 was.
#[tokio::test]
async fn the_kept_primary_is_rolled_first() {
    let (engine, fleet, _wheel_dir) = setup(STREAMING);
    for (name, data) in [("db1", "standby"), ("db2", "primary"), ("db3", "standby")] {
        fleet.host(name).expect("db").script(
            "# kbz-postgres roll order",
            output(&format!("patroni=inactive\ndata={data}\ntli=00000002\n"), 0),
        );
    }
    fleet.host("db1").expect("db1").script(
        "/primary",
        output(
            "Patroni at http://192.0.2.21:8008 reports neither a primary nor a running replica\n",
            1,
        ),
    );
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("db1 never ready");
    assert!(err.to_string().contains("db1"), "{err}");
    assert!(
        !fleet.host("db2").expect("db2").applied().is_empty(),
        "db2, the kept primary, was not rolled first"
    );
    let db3 = fleet.host("db3").expect("db3").applied();
    assert!(
        packages_first_only(&db3),
        "db3 changed before db1 was ready: {db3:?}"
    );
}

/// Kept standbys and no kept primary: E035 before any host is changed.
#[tokio::test]
async fn kept_data_with_no_primary_stops_before_anything_changes() {
    let (engine, fleet, _wheel_dir) = setup(STREAMING);
    for name in ["db1", "db2"] {
        fleet.host(name).expect("db").script(
            "# kbz-postgres roll order",
            output("patroni=inactive\ndata=standby\ntli=00000002\n", 0),
        );
    }
    let before = fleet.states();
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("no kept primary");
    assert_eq!(err.code(), Code::E035, "{err}");
    assert!(err.to_string().contains("db1: a standby's data"), "{err}");
    for (name, h) in fleet.hosts() {
        assert!(h.applied().is_empty(), "{name} changed");
    }
    assert_eq!(before, fleet.states());
}

#[tokio::test]
async fn first_member_that_never_leads_is_a_bootstrap_error() {
    let (engine, fleet, _wheel_dir) = setup(STREAMING);
    fleet.host("db1").expect("db1").script(
        "/primary",
        output(
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
    let mut cfg = Config::default();
    cfg.cluster.subnet = Some("192.0.2.0/24".parse().expect("net"));
    let ctx = Context::new(
        db_inventory(IP_PREFIX),
        cfg,
        Secrets::placeholders(Postgres.secret_names()),
    );
    let fleet = kbz_testkit::FakeConnector::debian_fleet(&ctx.inventory.hosts);
    let patroni = |role: &str, tl: u64| {
        format!(
            r#"{{"state": "running", "role": "{role}", "timeline": {tl}, "server_version": 150005}}"#
        )
    };
    let sample = "db2|streaming|sync|101|0|0\ndb3|streaming|async|102|64|0.001\n";
    let answer = |role: &str, tl: u64, repl: &str| {
        output(
            &kbz_core::health::render_output(&[
                ("postgres", "patroni", &patroni(role, tl), 0),
                ("postgres", "replication", repl, 0),
            ]),
            0,
        )
    };
    let primary = format!("{sample}@@sample\n{sample}");
    fleet
        .host("db1")
        .expect("db1")
        .script("# kbz-health", answer("master", 2, &primary));
    fleet
        .host("db2")
        .expect("db2")
        .script("# kbz-health", answer("replica", 2, "recovery\n"));
    fleet
        .host("db3")
        .expect("db3")
        .script("# kbz-health", answer("replica", 2, "recovery\n"));
    let hx = host_execs(&fleet, &ctx.inventory.hosts);
    let checks = kbz_core::health_run::check_component(&ctx, &Postgres, &hx).await;
    assert_eq!(checks.len(), 7, "{checks:#?}");
    assert!(checks.iter().all(|c| c.is_ok()), "{checks:#?}");
    let leader = checks
        .iter()
        .find(|c| c.check == "one leader")
        .expect("leader");
    assert_eq!(leader.detail, "leader db1");
    let db3 = checks
        .iter()
        .find(|c| c.host == "db3" && c.check == "replica streaming")
        .expect("db3");
    assert_eq!(db3.metrics.get("replication_lag_bytes"), Some(&64.0));
}

#[tokio::test]
async fn an_application_role_that_cannot_be_created_is_e035_and_rolls_back() {
    let (engine, fleet, _wheel_dir) = setup(STREAMING);
    let before = fleet.states();
    let mut failed = output("SET\nSET\nSET\n", 3);
    failed.stderr =
        b"psql:<stdin>:7: ERROR:  role \"app\" cannot be created: permission denied\n".to_vec();
    for (_, h) in fleet.hosts() {
        h.script(kbz_postgres::APP_SETUP_SCRIPT, failed.clone());
    }
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("role not created");
    assert_eq!(err.code(), Code::E035, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("application role app")
            && msg.contains("db1")
            && msg.contains("permission denied"),
        "{msg}"
    );
    kbz_testkit::assert_rolled_back(&err);
    assert_eq!(before, fleet.states(), "rollback did not restore the hosts");
}

/// Patroni around a restore of etcd, on strict fake hosts: what runs before and after, in
/// which order, and what an operator's own pause changes (the hook then leaves it paused).
mod dcs_restore {
    use kbz_core::backup::RestoreHook;
    use kbz_core::component::HostExec;
    use kbz_postgres::dcs_restore::{self, PatroniAroundEtcd};
    use kbz_testkit::{output, FakeHost};
    use std::sync::Arc;

    /// Three postgres members on fake hosts; `/cluster` names kbz-db2 as the running leader.
    fn members(
        pause_answer: (&str, i32),
    ) -> (kbz_core::Context, Vec<Arc<FakeHost>>, Vec<HostExec>) {
        let ctx = kbz_testkit::example_context(Vec::<String>::new());
        let hosts: Vec<kbz_core::Host> = ctx
            .inventory
            .hosts
            .iter()
            .filter(|h| PatroniAroundEtcd.applies_to(h))
            .cloned()
            .collect();
        assert_eq!(hosts.len(), 3);
        let cluster = format!(
            r#"{{"members": [{{"name": "{a}", "role": "replica", "state": "streaming"}}, {{"name": "{b}", "role": "leader", "state": "running"}}, {{"name": "{c}", "role": "sync_standby", "state": "streaming"}}]}}"#,
            a = hosts[0].hostname,
            b = hosts[1].hostname,
            c = hosts[2].hostname
        );
        let fakes: Vec<Arc<FakeHost>> = hosts
            .iter()
            .map(|h| {
                let f = Arc::new(FakeHost::empty(&h.hostname));
                f.script("pause --wait", output(pause_answer.0, pause_answer.1));
                f.script("edit-config --force -s pause=true", output("", 0));
                f.script("systemctl restart patroni", output("", 0));
                f.script("/cluster", output(&cluster, 0));
                f.script("resume --wait", output("", 0));
                f
            })
            .collect();
        let execs = hosts
            .iter()
            .zip(&fakes)
            .map(|(h, f)| HostExec {
                host: h.clone(),
                exec: f.clone(),
            })
            .collect();
        (ctx, fakes, execs)
    }

    #[tokio::test]
    async fn patroni_is_paused_restarted_and_resumed_around_an_etcd_restore() {
        let (ctx, fakes, execs) = members(("paused", 0));
        let h = PatroniAroundEtcd;
        assert_eq!(h.around(), "etcd");
        let scope = ctx.config.cluster.slug();
        assert_eq!(
            h.stale_keys(&ctx),
            dcs_restore::STALE
                .iter()
                .map(|k| format!("/service/{scope}/{k}"))
                .collect::<Vec<_>>()
        );
        assert!(!h
            .stale_keys(&ctx)
            .iter()
            .any(|k| k.ends_with("/config") || k.ends_with("/initialize")));

        let state = h.before(&ctx, &execs).await.expect("before");
        assert!(state.undo && state.note.is_none(), "{state:?}");
        assert!(state
            .if_failed
            .as_deref()
            .is_some_and(|s| s.contains("resume")));
        // One member pauses the whole cluster.
        assert_eq!(fakes[0].ran().len(), 1);
        assert!(fakes[1].ran().is_empty());

        let done = h.after(&ctx, &execs, &state).await.expect("after");
        assert!(done.contains("resumed"), "{done}");
        assert!(done.contains(&execs[1].host.hostname), "{done}");
        // On the first member: pause written into the restored etcd, then the restart; the
        // resume only after the leader was seen.
        let ran = fakes[0].ran();
        let at = |p: &str| ran.iter().position(|s| s.contains(p)).unwrap_or(usize::MAX);
        assert!(
            at("edit-config") < at("systemctl restart patroni"),
            "{ran:#?}"
        );
        assert!(at("/cluster") < at("resume --wait"), "{ran:#?}");
        for f in &fakes {
            assert_eq!(
                f.ran()
                    .iter()
                    .filter(|s| s.contains("systemctl restart patroni"))
                    .count(),
                1,
                "{}",
                f.ran().join("\n")
            );
        }
        kbz_testkit::assert_valid_sh(ran);
    }

    #[tokio::test]
    async fn a_cluster_the_operator_paused_stays_paused() {
        // pause_script prints `already` when patronictl says "Cluster is already paused".
        let (ctx, fakes, execs) = members(("already", 0));
        let h = PatroniAroundEtcd;
        let state = h.before(&ctx, &execs).await.expect("before");
        assert!(!state.undo && state.if_failed.is_none(), "{state:?}");
        let done = h.after(&ctx, &execs, &state).await.expect("after");
        assert!(done.contains("left paused"), "{done}");
        assert!(fakes
            .iter()
            .all(|f| !f.ran().iter().any(|s| s.contains("resume"))));
    }

    #[tokio::test]
    async fn etcd_down_before_the_restore_is_noted_and_patroni_still_resumes() {
        let (ctx, fakes, execs) = members(("Error: Can not find accessible cluster member", 1));
        let h = PatroniAroundEtcd;
        let state = h.before(&ctx, &execs).await.expect("before");
        assert!(state.undo, "{state:?}");
        assert!(
            state
                .note
                .as_deref()
                .is_some_and(|n| n.contains("could not be paused")),
            "{state:?}"
        );
        // Every member was asked before giving up on the pause.
        assert!(fakes.iter().all(|f| f.ran().len() == 1));
        let done = h.after(&ctx, &execs, &state).await.expect("after");
        assert!(
            done.contains("resumed") && done.contains("could not be paused"),
            "{done}"
        );
    }
}
