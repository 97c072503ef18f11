//! The packages-first phase and the batched probe on fake hosts, with base and two more
//! components (one rolling, with a drop-in its package's postinst needs): one
//! `apt-get install` per host for the whole stack, the rolling component's own steps after
//! it, rollback back to the exact prior state, and a converged re-run costing the same round
//! trips per host whatever the number of components.

use kbz_base::Base;
use kbz_core::component::HostExec;
use kbz_core::resource::{Op, Resource};
use kbz_core::{
    Component, ComponentError, Config, Context, Engine, EngineError, Executor, Host, Inventory,
    Role, RunOptions, Secrets,
};
use kbz_testkit::{fake_engine, FakeConnector};
use std::sync::{Arc, Mutex};

/// Rolling, with a drop-in declared before its package and a service restarted on it.
#[derive(Debug, Default)]
struct Roller {
    /// Hosts `host_ready` was asked about, in order.
    ready: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Component for Roller {
    fn name(&self) -> &'static str {
        "roller"
    }
    fn module(&self) -> u8 {
        5
    }
    fn rolling(&self) -> bool {
        true
    }
    fn desired(&self, _ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        Ok(vec![
            Resource::file("/etc/roller/dropin.conf", "member\n", 0o644),
            Resource::package("roller-server"),
            Resource::file(
                "/etc/roller/roller.conf",
                format!("name {}\n", host.hostname),
                0o644,
            ),
            Resource::service(
                "roller",
                &["/etc/roller/dropin.conf", "/etc/roller/roller.conf"],
            ),
        ])
    }
    async fn host_ready(
        &self,
        _ctx: &Context,
        host: &HostExec,
        _changed: bool,
    ) -> Result<(), ComponentError> {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(host.host.hostname.clone());
        Ok(())
    }
}

/// Packages only.
#[derive(Debug)]
struct Plain;

#[async_trait::async_trait]
impl Component for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }
    fn module(&self) -> u8 {
        3
    }
    fn desired(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        Ok(vec![
            Resource::package("plain-tool"),
            Resource::package("chrony"),
            Resource::file("/etc/plain.conf", "x\n", 0o644),
        ])
    }
}

fn setup() -> (Engine, Arc<FakeConnector>, Arc<Roller>) {
    let inv = Inventory {
        path: "servers.tsv".into(),
        hosts: (1..=3)
            .map(|i| {
                Host::new(
                    &format!("node{i}"),
                    format!("192.0.2.{}", 10 + i).parse().expect("ip"),
                    &[Role::Etcd],
                )
            })
            .collect(),
    };
    let mut cfg = Config::default();
    cfg.cluster.apt_proxy = Some("http://192.0.2.1:3142".into());
    let roller = Arc::new(Roller::default());
    let ctx = Context::new(inv, cfg, Secrets::in_memory());
    let (engine, fleet) = fake_engine(ctx, vec![Arc::new(Base), Arc::new(Plain), roller.clone()]);
    for (_, h) in fleet.hosts() {
        h.package_units("roller-server", &["roller"]);
    }
    (engine, fleet, roller)
}

fn installs(ops: &[Op]) -> Vec<Vec<String>> {
    ops.iter()
        .filter_map(|o| match o {
            Op::InstallPackages { names } => Some(names.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn one_install_per_host_for_the_whole_stack_then_the_roll() {
    let (engine, fleet, roller) = setup();
    let report = engine.run(&RunOptions::default()).await.expect("install");
    for (name, h) in fleet.hosts() {
        let applied = h.applied();
        let i = installs(&applied);
        assert_eq!(i.len(), 1, "{name}: one apt-get install per host: {i:?}");
        for p in ["chrony", "plain-tool", "roller-server"] {
            assert!(i[0].contains(&p.to_string()), "{name}: {p} not in {i:?}");
        }
        let at = |what: &str| {
            applied
                .iter()
                .position(|o| o.describe().starts_with(what))
                .unwrap_or_else(|| panic!("{name}: no `{what}` in {applied:?}"))
        };
        // Base's apt proxy and the roller's drop-in before the install; the rest after.
        assert!(at("write /etc/apt/apt.conf.d/01kbz-proxy") < at("install packages"));
        assert!(at("write /etc/roller/dropin.conf") < at("install packages"));
        assert!(at("install packages") < at("write /etc/roller/roller.conf"));
        // The drop-in changed in this run: the roller is restarted in its own (rolling) turn.
        assert_eq!(h.restarts("roller"), 1, "{name}");
        assert!(h.state().services["roller"].active);
    }
    assert_eq!(
        *roller.ready.lock().expect("ready"),
        ["node1", "node2", "node3"],
        "the rolling steps still go one host at a time"
    );
    assert!(report.timings.iter().any(|t| t.component == "packages"));
    let phases: Vec<&str> = report
        .summary
        .phases
        .iter()
        .map(|p| p.phase.as_str())
        .collect();
    assert_eq!(phases, ["connect", "probe", "packages", "apply", "cluster"]);
    assert!(report
        .timings
        .iter()
        .any(|t| t.component == "all" && t.phase == "probe"));
}

#[tokio::test]
async fn a_converged_rerun_probes_each_host_once_for_every_component() {
    let (engine, fleet, _) = setup();
    engine.run(&RunOptions::default()).await.expect("install");
    for (_, h) in fleet.hosts() {
        h.reset_round_trips();
    }
    let report = engine.run(&RunOptions::default()).await.expect("rerun");
    assert_eq!(report.changed(), 0, "{}", report.plan.render());
    for (name, h) in fleet.hosts() {
        assert!(installs(&h.applied()).len() == 1, "{name}: installed again");
        // Facts, one probe of the three components, the host lock taken and released
        // (one probe per component before: 6).
        assert_eq!(h.round_trips(), 4, "{name}");
    }
    assert_eq!(report.round_trips, 12);
}

#[tokio::test]
async fn a_failed_roll_rolls_back_the_packages_of_every_host() {
    let (engine, fleet, _) = setup();
    let before: Vec<_> = fleet.hosts().map(|(_, h)| h.state()).collect();
    fleet
        .host("node2")
        .expect("node2")
        .fail_matching("write /etc/roller/roller.conf");
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("node2 fails");
    assert!(
        matches!(&err, EngineError::Failed { component, .. } if component == "roller"),
        "{err}"
    );
    kbz_testkit::assert_rolled_back(&err);
    let after: Vec<_> = fleet.hosts().map(|(_, h)| h.state()).collect();
    assert_eq!(before, after, "rollback did not restore every host");
    // node3 got its packages with everyone else, never its rolling steps.
    let node3 = fleet.host("node3").expect("node3").applied();
    assert!(
        !node3
            .iter()
            .any(|o| o.describe().starts_with("write /etc/roller/roller.conf")),
        "{node3:?}"
    );
}
