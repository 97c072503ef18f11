//! HAProxy on fake hosts through the real engine: a fresh fleet converges, a second run
//! changes nothing, health reads the stats CSV without putting the password on a command
//! line, and uninstall removes what install added.

use kbz_core::component::HostExec;
use kbz_core::engine::Mode;
use kbz_core::{Component, Context, Engine, Output, Role, RunOptions};
use kbz_haproxy::{Haproxy, CONFIG_PATH};
use kbz_testkit::FakeConnector;
use kbz_testkit::{example_context, fake_engine, host_execs, output};
use std::sync::Arc;

/// The example with short readiness waits.
fn example() -> Context {
    let mut ctx = example_context(Haproxy.secret_names());
    Arc::make_mut(&mut ctx.config).timeouts.readiness = 2;
    ctx
}

fn setup() -> (Engine, Arc<FakeConnector>, Context) {
    let ctx = example();
    let (engine, fleet) = fake_engine(ctx.clone(), vec![Arc::new(Haproxy)]);
    for name in ["lb1", "lb2"] {
        let h = fleet.host(name).expect("lb");
        h.package_units("haproxy", &["haproxy"]);
        // The readiness check: HAProxy runs and its stats page wants credentials.
        h.script("systemctl is-active --quiet haproxy && ", output("", 0));
    }
    (engine, fleet, ctx)
}

fn lb_execs(fleet: &FakeConnector, ctx: &Context) -> Vec<HostExec> {
    host_execs(fleet, ctx.inventory.with_role(Role::Lb))
}

#[tokio::test]
async fn converges_and_a_second_run_changes_nothing() {
    let (engine, fleet, _) = setup();
    let first = engine.run(&RunOptions::default()).await.expect("first run");
    assert!(first.changed() > 0);
    for (name, h) in fleet.hosts() {
        let s = h.state();
        if !name.starts_with("lb") {
            assert!(!s.packages.contains("haproxy"), "{name} is not an lb host");
            continue;
        }
        assert!(s.packages.contains("haproxy"), "{name}");
        let cfg = &s.files[CONFIG_PATH];
        assert_eq!((cfg.mode, cfg.owner.as_str()), (0o640, "root:haproxy"));
        let svc = s.services["haproxy"];
        assert!(svc.enabled && svc.active, "{name}: {svc:?}");
        // The readiness wait asked for the stats page on the host's own address.
        assert!(
            h.ran()
                .iter()
                .any(|s| s.contains(":8404/stats") && s.contains("is-active")),
            "{name}: {:?}",
            h.ran()
        );
    }
    let restarts: Vec<u64> = fleet.hosts().map(|(_, h)| h.restarts("haproxy")).collect();
    let applied: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();

    kbz_testkit::reset_round_trips(&fleet);
    let second = engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.changed(), 0, "{}", second.plan.render());
    // The converged re-run's SSH round trips per host (facts, the batched probe, the
    // host lock taken and released, then the component's read-only cluster checks).
    assert_eq!(
        kbz_testkit::round_trips(&fleet),
        concat!(
            "db1=3 db2=3 db3=3 k8s-m1=3 k8s-m2=3 k8s-m3=3 k8s-w1=3 k8s-w2=3 k8s-w3=3 ",
            "lb1=5 lb2=5 mq1=3 mq2=3 mq3=3"
        )
    );
    let restarts_after: Vec<u64> = fleet.hosts().map(|(_, h)| h.restarts("haproxy")).collect();
    assert_eq!(
        restarts, restarts_after,
        "a converged re-run restarted haproxy"
    );
    let applied_after: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    assert_eq!(
        applied, applied_after,
        "a converged re-run applied an operation"
    );
}

#[tokio::test]
async fn a_changed_config_restarts_haproxy_once() {
    let (engine, fleet, mut ctx) = setup();
    engine.run(&RunOptions::default()).await.expect("install");
    let before = fleet.host("lb1").expect("lb1").restarts("haproxy");
    let mut cfg = (*ctx.config).clone();
    cfg.vips.remove("redis");
    ctx.config = Arc::new(cfg);
    let comps: Vec<Arc<dyn Component>> = vec![Arc::new(Haproxy)];
    let engine = Engine::new(ctx, comps, fleet.clone());
    let report = engine.run(&RunOptions::default()).await.expect("rerun");
    assert!(report.changed() > 0);
    assert_eq!(
        fleet.host("lb1").expect("lb1").restarts("haproxy"),
        before + 1
    );
}

const CSV: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight
stats,FRONTEND,,,1,1,4096,3,405,22153,0,0,0,,,,,OPEN,
postgres_primary,db1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
postgres_primary,db2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
postgres_primary,db3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
postgres_replicas,db1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
postgres_replicas,db2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
postgres_replicas,db3,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
redis_master,db1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
redis_master,db2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
redis_master,db3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
rabbitmq,mq1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
rabbitmq,mq2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
rabbitmq,mq3,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
mariadb,mq1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
mariadb,mq2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
mariadb,mq3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
k8s_api,k8s-m1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
k8s_api,k8s-m2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
k8s_api,k8s-m3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
";

fn find_ok(checks: &[kbz_core::health::HealthCheck], host: &str, check: &str) -> bool {
    checks
        .iter()
        .any(|c| c.host == host && c.check.starts_with(check) && c.is_ok())
}

#[tokio::test]
async fn health_reports_backends_and_keeps_the_password_off_the_command_line() {
    let (_, fleet, ctx) = setup();
    for name in ["lb1", "lb2"] {
        fleet
            .host(name)
            .expect("lb")
            .script("stats;csv", output(CSV, 0));
    }
    let checks =
        kbz_core::health_run::check_component(&ctx, &Haproxy, &lb_execs(&fleet, &ctx)).await;
    assert_eq!(checks.len(), 2 * 7 + 6, "{checks:#?}");
    assert!(find_ok(&checks, "lb1", "backend k8s_api"));
    assert!(find_ok(&checks, "lb1", "backend rabbitmq"));
    assert!(find_ok(&checks, "lb2", "backend mariadb"));
    let find = |host: &str, check: &str| {
        checks
            .iter()
            .find(|c| c.host == host && c.check.starts_with(check))
            .unwrap_or_else(|| panic!("no {check} on {host}: {checks:#?}"))
    };
    assert!(find("lb1", "stats").is_ok());
    assert!(find("lb1", "backend postgres_primary").is_ok());
    assert!(find("lb2", "backend postgres_replicas").is_ok());
    let redis = find("lb2", "backend redis_master");
    assert_eq!(
        redis.status,
        kbz_core::health::HealthStatus::Degraded,
        "{redis:?}"
    );
    assert_eq!(redis.code, Some(kbz_errors::Code::E040), "{redis:?}");
    // Neither lb host serves the Redis front as expected (two masters up): down.
    let front = find("-", "front 192.0.2.101:6379");
    assert_eq!(
        front.status,
        kbz_core::health::HealthStatus::Down,
        "{front:?}"
    );
    for name in ["lb1", "lb2"] {
        let ran = fleet.host(name).expect("lb").ran();
        assert!(ran.iter().any(|s| s.contains("-K -")), "{ran:?}");
        assert!(
            ran.iter().all(|s| !s.contains("PLACEHOLDER")),
            "a secret reached a command line: {ran:?}"
        );
    }
}

#[tokio::test]
async fn health_fails_with_e040_when_the_stats_page_does_not_answer() {
    let (_, fleet, ctx) = setup();
    for name in ["lb1", "lb2"] {
        fleet.host(name).expect("lb").script(
            "stats;csv",
            Output {
                status: 7,
                stdout: Vec::new(),
                stderr: b"curl: (7) Failed to connect".to_vec(),
            },
        );
    }
    let checks =
        kbz_core::health_run::check_component(&ctx, &Haproxy, &lb_execs(&fleet, &ctx)).await;
    assert_eq!(checks.len(), 2 + 6, "{checks:#?}");
    assert!(checks
        .iter()
        .filter(|c| c.host == "-")
        .all(|c| c.status == kbz_core::health::HealthStatus::Down));
    assert!(
        checks
            .iter()
            .filter(|c| c.check == "stats")
            .all(|c| !c.is_ok()
                && c.code == Some(kbz_errors::Code::E040)
                && c.detail.contains("curl exited 7")),
        "{checks:#?}"
    );
}

#[tokio::test]
async fn uninstall_removes_service_package_and_config() {
    let (engine, fleet, _) = setup();
    engine.run(&RunOptions::default()).await.expect("install");
    let report = engine
        .run(&RunOptions {
            mode: Mode::Uninstall,
            ..RunOptions::default()
        })
        .await
        .expect("uninstall");
    assert!(report.changed() > 0);
    for name in ["lb1", "lb2"] {
        let s = fleet.host(name).expect("lb").state();
        assert!(!s.packages.contains("haproxy"), "{name}");
        assert!(!s.files.contains_key(CONFIG_PATH), "{name}");
        assert!(
            s.services
                .get("haproxy")
                .is_none_or(|u| !u.active && !u.enabled),
            "{name}: {:?}",
            s.services.get("haproxy")
        );
    }
}
