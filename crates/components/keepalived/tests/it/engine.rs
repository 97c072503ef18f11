//! keepalived on fake hosts through the real engine: a fresh fleet converges, a second run
//! changes nothing, the cluster check wants exactly one holder per VIP (E037), health reports
//! the holders, and uninstall removes what install added.

use kbz_core::component::HostExec;
use kbz_core::engine::Mode;
use kbz_core::{Component, ComponentError, Context, Engine, EngineError, Output, Role, RunOptions};
use kbz_errors::{Code, HasCode};
use kbz_keepalived::{Keepalived, CHECK_SCRIPT_PATH, CONFIG_PATH};
use kbz_testkit::FakeConnector;
use kbz_testkit::{example_context, fake_engine, host_execs, output};
use std::sync::Arc;

/// The example with short readiness waits.
fn example() -> Context {
    let mut ctx = example_context(Keepalived.secret_names());
    Arc::make_mut(&mut ctx.config).timeouts.readiness = 2;
    ctx
}

/// `ip -o addr show` as an lb host reports it, holding `vips`.
fn addresses(ip: &str, vips: &[&str]) -> Output {
    let mut s = format!(
        "keepalived=active\n1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n2: eth0    inet {ip}/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n"
    );
    for v in vips {
        s.push_str(&format!(
            "2: eth0    inet {v}/32 scope global eth0\\       valid_lft forever preferred_lft forever\n"
        ));
    }
    output(&s, 0)
}

const ALL_VIPS: &[&str] = &[
    "192.0.2.100",
    "192.0.2.101",
    "192.0.2.102",
    "192.0.2.103",
    "192.0.2.104",
];

fn setup(lb2_vips: &[&str]) -> (Engine, Arc<FakeConnector>, Context) {
    let ctx = example();
    let (engine, fleet) = fake_engine(ctx.clone(), vec![Arc::new(Keepalived)]);
    let lb1 = fleet.host("lb1").expect("lb1");
    lb1.package_units("keepalived", &["keepalived"]);
    // The rolling step's readiness check after each host: keepalived runs.
    lb1.script("systemctl is-active --quiet keepalived", output("", 0));
    lb1.script("ip -o addr show", addresses("192.0.2.11", ALL_VIPS));
    let lb2 = fleet.host("lb2").expect("lb2");
    lb2.package_units("keepalived", &["keepalived"]);
    lb2.script("systemctl is-active --quiet keepalived", output("", 0));
    lb2.script("ip -o addr show", addresses("192.0.2.12", lb2_vips));
    (engine, fleet, ctx)
}

#[tokio::test]
async fn converges_and_a_second_run_changes_nothing() {
    let (engine, fleet, _) = setup(&[]);
    let first = engine.run(&RunOptions::default()).await.expect("first run");
    assert!(first.changed() > 0);
    for (name, h) in fleet.hosts() {
        let s = h.state();
        if !name.starts_with("lb") {
            assert!(
                !s.packages.contains("keepalived"),
                "{name} is not an lb host"
            );
            continue;
        }
        assert!(s.packages.contains("keepalived"), "{name}");
        let conf = &s.files[CONFIG_PATH];
        assert_eq!((conf.mode, conf.owner.as_str()), (0o640, "root:root"));
        let text = String::from_utf8_lossy(&conf.content);
        assert!(text.contains(&format!("router_id {name}")), "{text}");
        let script = &s.files[CHECK_SCRIPT_PATH];
        assert_eq!((script.mode, script.owner.as_str()), (0o755, "root:root"));
        let svc = s.services["keepalived"];
        assert!(svc.enabled && svc.active, "{name}: {svc:?}");
    }
    let restarts: Vec<u64> = fleet
        .hosts()
        .map(|(_, h)| h.restarts("keepalived"))
        .collect();
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
    let restarts_after: Vec<u64> = fleet
        .hosts()
        .map(|(_, h)| h.restarts("keepalived"))
        .collect();
    assert_eq!(
        restarts, restarts_after,
        "a converged re-run restarted keepalived"
    );
    let applied_after: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    assert_eq!(
        applied, applied_after,
        "a converged re-run applied an operation"
    );
}

#[tokio::test]
async fn a_vip_held_twice_fails_with_e037() {
    let (engine, _, _) = setup(&["192.0.2.101"]);
    let e = engine
        .run(&RunOptions::default())
        .await
        .expect_err("split brain must fail the run");
    assert_eq!(e.code(), Code::E037, "{e}");
    let EngineError::Failed { source, .. } = &e else {
        panic!("expected a component failure, got {e}");
    };
    assert!(source.to_string().contains("redis"), "{source}");
    assert!(
        matches!(**source, ComponentError::Cluster { .. }),
        "{source:?}"
    );
}

/// The lb hosts of `ctx` with their fake executors.
fn lb_execs(fleet: &FakeConnector, ctx: &Context) -> Vec<HostExec> {
    host_execs(fleet, ctx.inventory.with_role(Role::Lb))
}

#[tokio::test]
async fn health_names_the_holder_of_each_vip() {
    let (_, fleet, ctx) = setup(&[]);
    let checks =
        kbz_core::health_run::check_component(&ctx, &Keepalived, &lb_execs(&fleet, &ctx)).await;
    assert_eq!(checks.len(), 2 + 5, "{checks:#?}");
    assert!(checks.iter().all(|c| c.is_ok()), "{checks:#?}");
    let pg = checks
        .iter()
        .find(|c| c.check == "VIP postgres 192.0.2.100")
        .expect("postgres VIP check");
    assert_eq!(pg.host, "lb1");

    // Nobody holds the VIPs.
    let empty = FakeConnector::debian_fleet(&ctx.inventory.hosts);
    for (name, ip) in [("lb1", "192.0.2.11"), ("lb2", "192.0.2.12")] {
        let h = empty.host(name).expect("lb");
        h.script("ip -o addr show", addresses(ip, &[]));
    }
    let checks =
        kbz_core::health_run::check_component(&ctx, &Keepalived, &lb_execs(&empty, &ctx)).await;
    let bad: Vec<_> = checks.iter().filter(|c| !c.is_ok()).collect();
    assert_eq!(bad.len(), 5, "{checks:#?}");
    assert!(
        bad.iter().all(|c| c.code == Some(kbz_errors::Code::E037)
            && c.status == kbz_core::health::HealthStatus::Down),
        "{bad:#?}"
    );
}

#[tokio::test]
async fn uninstall_removes_service_package_and_files() {
    let (engine, fleet, _) = setup(&[]);
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
        assert!(!s.packages.contains("keepalived"), "{name}");
        assert!(!s.files.contains_key(CONFIG_PATH), "{name}");
        assert!(!s.files.contains_key(CHECK_SCRIPT_PATH), "{name}");
        assert!(
            s.services
                .get("keepalived")
                .is_none_or(|u| !u.active && !u.enabled),
            "{name}: {:?}",
            s.services.get("keepalived")
        );
    }
}
