//! The embedded component through kbz's real engine on strict fake hosts (kbz-testkit): a
//! fresh fleet converges, a second run changes nothing and restarts nothing, a dry-run of
//! the converged fleet plans nothing, uninstall removes everything install added (and a
//! second uninstall is a no-op), a failure rolls the host back, and the health check reads
//! the probe's answer in one round trip per host.

use kbz_core::engine::Mode;
use kbz_core::{Component, Config, Context, Engine, Host, Inventory, Role, RunOptions, Secrets};
use kbz_embed_example::{NodeExporter, DROPIN_FILE, PACKAGE, SERVICE};
use kbz_testkit::{host_execs, output, FakeConnector};
use std::sync::Arc;

fn inventory() -> Inventory {
    Inventory {
        path: "servers.tsv".into(),
        hosts: vec![
            Host::new("node1", "192.0.2.11".parse().expect("ip"), &[Role::Etcd]),
            Host::new("node2", "192.0.2.12".parse().expect("ip"), &[]),
        ],
    }
}

fn setup() -> (Engine, Arc<FakeConnector>, Context) {
    let ctx = Context::new(inventory(), Config::default(), Secrets::in_memory());
    let fleet = Arc::new(FakeConnector::debian_fleet(&ctx.inventory.hosts));
    for (_, h) in fleet.hosts() {
        // Debian's package ships the unit enabled and started.
        h.package_units(PACKAGE, &[SERVICE]);
    }
    let comps: Vec<Arc<dyn Component>> = vec![Arc::new(NodeExporter)];
    (Engine::new(ctx.clone(), comps, fleet.clone()), fleet, ctx)
}

fn uninstall() -> RunOptions {
    RunOptions {
        mode: Mode::Uninstall,
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn first_run_changes_second_changes_nothing_uninstall_removes() {
    let (engine, fleet, _) = setup();
    let first = engine.run(&RunOptions::default()).await.expect("first run");
    assert!(first.summary.changed > 0, "{}", first.plan.render());
    for (name, h) in fleet.hosts() {
        let s = h.state();
        assert!(s.packages.contains(PACKAGE), "{name}");
        let dropin = std::str::from_utf8(&s.files[DROPIN_FILE].content)
            .expect("utf8")
            .to_string();
        let ip = if name == "node1" {
            "192.0.2.11"
        } else {
            "192.0.2.12"
        };
        assert!(
            dropin.contains(&format!("--web.listen-address={ip}:9100\n")),
            "{name}: {dropin}"
        );
        let svc = s.services[SERVICE];
        assert!(svc.enabled && svc.active, "{name}: {svc:?}");
        assert!(
            h.ran().iter().any(|s| s == "systemctl daemon-reload"),
            "{name}: the new drop-in was not loaded: {:?}",
            h.ran()
        );
        // The packages-first phase wrote the drop-in before the package, whose first start
        // (after its postinst's daemon-reload) read it: the run does not restart it.
        assert_eq!(h.restarts(SERVICE), 0, "{name}");
    }
    let applied: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();

    let second = engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.summary.changed, 0, "{}", second.plan.render());
    assert!(second.summary.ok > 0);
    let after: Vec<usize> = fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    assert_eq!(applied, after, "a converged re-run applied an operation");
    assert!(
        fleet.hosts().all(|(_, h)| h.restarts(SERVICE) == 0),
        "a converged re-run restarted the service"
    );

    let dry = engine
        .run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
        .await
        .expect("dry-run");
    assert_eq!(dry.plan.operations(), 0, "{}", dry.plan.render());

    let removed = engine.run(&uninstall()).await.expect("uninstall");
    assert!(removed.summary.changed > 0);
    for (name, h) in fleet.hosts() {
        let s = h.state();
        assert!(!s.packages.contains(PACKAGE), "{name}: package left");
        assert!(!s.files.contains_key(DROPIN_FILE), "{name}: drop-in left");
        assert!(
            s.services
                .get(SERVICE)
                .is_none_or(|u| !u.active && !u.enabled),
            "{name}: {:?}",
            s.services.get(SERVICE)
        );
    }
    let again = engine.run(&uninstall()).await.expect("second uninstall");
    assert_eq!(again.summary.changed, 0, "{}", again.plan.render());
}

#[tokio::test]
async fn a_failed_run_leaves_the_host_as_it_was() {
    let (engine, fleet, _) = setup();
    let node2 = fleet.host("node2").expect("node2");
    let before = node2.state();
    // The package install fails on node2, after its drop-in was written.
    node2.fail_matching("install");
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("the run must fail");
    assert!(err.to_string().contains("rolled back"), "{err}");
    let after = node2.state();
    assert_eq!(
        before.files, after.files,
        "node2's files differ after rollback"
    );
    assert_eq!(before.packages, after.packages);
    let node1 = fleet.host("node1").expect("node1").state();
    assert!(
        !node1.packages.contains(PACKAGE),
        "node1 was not rolled back"
    );
    assert!(!node1.files.contains_key(DROPIN_FILE));
}

#[tokio::test]
async fn health_reads_the_probe_in_one_round_trip_per_host() {
    let (engine, fleet, ctx) = setup();
    engine.run(&RunOptions::default()).await.expect("install");
    fleet.host("node1").expect("node1").script(
        "systemctl is-active",
        output("active=active\nseries=287\n", 0),
    );
    fleet.host("node2").expect("node2").script(
        "systemctl is-active",
        output("active=failed\nseries=0\n", 0),
    );
    for (_, h) in fleet.hosts() {
        h.reset_round_trips();
    }
    let execs = host_execs(&fleet, &ctx.inventory.hosts);
    let checks = kbz_core::health_run::check_component(&ctx, &NodeExporter, &execs).await;
    assert_eq!(checks.len(), 2, "{checks:#?}");
    assert!(
        checks[0].is_ok()
            && checks[0]
                .detail
                .contains("287 node_ series on 192.0.2.11:9100")
    );
    assert!(
        !checks[1].is_ok() && checks[1].detail.contains("is failed"),
        "{:?}",
        checks[1]
    );
    assert_eq!(checks[1].code, Some(kbz_core::errors::Code::E040));
    for e in &execs {
        assert_eq!(e.exec.round_trips(), 1, "{}", e.host.hostname);
    }
}

#[tokio::test]
async fn a_fresh_host_takes_five_operations() {
    // docs/embedding.md shows this count for one host.
    let (engine, _, _) = setup();
    let r = engine.run(&RunOptions::default()).await.expect("run");
    assert_eq!(r.hosts["node1"].changed, 5, "{}", r.plan.render());
}
