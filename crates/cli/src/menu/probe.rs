//! The menu's read-only look at the fleet: the install's own dry-run plan (the engine in check
//! mode: probes only, unreachable hosts planned as fresh) and kbz-health's checks, folded into
//! one state per module (not installed / converged / drifted with N changes / unhealthy).

use kbz_core::engine::{RunOptions, RunReport};
use kbz_core::executor::Connector;
use kbz_core::health::{HealthStatus, CLUSTER};
use kbz_core::{Component, Context, Engine};
use kbz_errors::{Code, HasCode};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::health::{self, HealthReport};

/// What the probe found for one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// No host of the inventory has a role this module applies to.
    NoHosts,
    /// Its hosts were not contacted (`--offline`, the bundled example) or did not answer:
    /// planned as fresh hosts, so the state is unknown.
    NotReached {
        /// Operations a fresh host would need.
        changes: usize,
    },
    /// Nothing of it is in place: every operation a fresh host needs is planned.
    NotInstalled {
        /// Operations planned.
        changes: usize,
    },
    /// Every resource is in the desired state and its health checks pass.
    Converged,
    /// Some resources differ from the desired state.
    Drifted {
        /// Operations planned.
        changes: usize,
    },
    /// In the desired state, but health checks fail.
    Unhealthy {
        /// The worst status of its checks.
        status: HealthStatus,
        /// Checks that do not pass.
        failing: usize,
        /// The first failing check's code.
        code: Option<Code>,
    },
}

impl ModuleState {
    /// A short text for the module list (fits the 80-column layout).
    pub fn label(&self) -> String {
        match self {
            ModuleState::NoHosts => "no hosts".into(),
            ModuleState::NotReached { changes } => format!("not reached ({changes} ops)"),
            ModuleState::NotInstalled { changes } => format!("not installed ({changes})"),
            ModuleState::Converged => "converged".into(),
            ModuleState::Drifted { changes } => format!("drifted: {changes} changes"),
            ModuleState::Unhealthy {
                status, failing, ..
            } => format!("unhealthy: {failing} {status}"),
        }
    }

    /// Operations the plan holds for it.
    pub fn changes(&self) -> usize {
        match self {
            ModuleState::NotReached { changes }
            | ModuleState::NotInstalled { changes }
            | ModuleState::Drifted { changes } => *changes,
            _ => 0,
        }
    }
}

/// One module row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRow {
    /// Module number.
    pub module: u8,
    /// Component name.
    pub name: String,
    /// Hosts it applies to.
    pub hosts: usize,
    /// What the probe found.
    pub state: ModuleState,
}

/// One host row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    /// Inventory hostname.
    pub hostname: String,
    /// Address.
    pub ip: String,
    /// Roles, comma-separated.
    pub roles: String,
    /// `Some(true)` answered, `Some(false)` not reached, `None` not asked (offline).
    pub reached: Option<bool>,
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Every module, in order.
    pub modules: Vec<ModuleRow>,
    /// Every host of the inventory.
    pub hosts: Vec<HostRow>,
    /// The dry-run of the whole install (its plan holds the file diffs).
    pub report: RunReport,
    /// The health checks (`None` offline: no host is asked).
    pub health: Option<HealthReport>,
    /// The first error code the probe met (the plan failed, a check failed).
    pub last_code: Option<Code>,
    /// A failure of the dry-run itself (its message), in which case the modules are not
    /// judged by a plan.
    pub error: Option<String>,
}

/// Plans the install in check mode (nothing changes, no lock is taken) and, unless
/// `offline`, runs the health checks; judges each module.
pub async fn probe(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    connector: Arc<dyn Connector>,
    offline: bool,
) -> Probe {
    let dry = RunOptions {
        dry_run: true,
        forks: ctx.config.cluster.forks.max(1),
        ..RunOptions::default()
    };
    let engine = Engine::new(ctx.clone(), components.to_vec(), connector.clone());
    let (report, error, mut last_code) = match engine.run(&dry).await {
        Ok(r) => (r, None, None),
        Err(e) => (RunReport::default(), Some(e.to_string()), Some(e.code())),
    };
    // What a fresh host needs, to tell "not installed" from "drifted".
    let fresh = if offline {
        report.clone()
    } else {
        let e = Engine::new(
            ctx.clone(),
            components.to_vec(),
            Arc::new(crate::connect::Offline),
        );
        e.run(&dry).await.unwrap_or_default()
    };
    let health = if offline {
        None
    } else {
        Some(health::check(ctx, components, connector.as_ref()).await)
    };
    if last_code.is_none() {
        last_code = health
            .as_ref()
            .and_then(|h| h.failing().find_map(|c| c.code));
    }
    let modules = components
        .iter()
        .map(|c| {
            judge(
                c.as_ref(),
                ctx,
                &report,
                &fresh,
                health.as_ref(),
                error.is_some(),
            )
        })
        .collect();
    let hosts = ctx
        .inventory
        .hosts
        .iter()
        .map(|h| HostRow {
            hostname: h.hostname.clone(),
            ip: h.ip.to_string(),
            roles: h
                .roles
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(","),
            reached: if offline {
                None
            } else {
                report
                    .hosts
                    .get(&h.hostname)
                    .map(|r| !r.unreachable)
                    .or_else(|| {
                        health
                            .as_ref()
                            .map(|hr| !hr.unreachable.contains(&h.hostname))
                    })
            },
        })
        .collect();
    Probe {
        modules,
        hosts,
        report,
        health,
        last_code,
        error,
    }
}

/// One module's state from the plan, the fresh plan and the health checks.
fn judge(
    c: &dyn Component,
    ctx: &Context,
    report: &RunReport,
    fresh: &RunReport,
    health: Option<&HealthReport>,
    plan_failed: bool,
) -> ModuleRow {
    let hosts = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| c.applies_to(h))
        .count();
    let count = |r: &RunReport| -> (usize, usize, usize) {
        let plans: Vec<_> = r
            .plan
            .hosts
            .iter()
            .filter(|p| p.component == c.name())
            .collect();
        (
            plans.iter().map(|p| p.changes.len()).sum(),
            plans.len(),
            plans.iter().filter(|p| p.unreachable).count(),
        )
    };
    let (changes, planned, unreachable) = count(report);
    let (fresh_changes, _, _) = count(fresh);
    let checks: Vec<_> = health
        .map(|h| {
            h.checks
                .iter()
                .filter(|k| k.component == c.name())
                .collect()
        })
        .unwrap_or_default();
    let failing: Vec<_> = checks.iter().filter(|k| !k.is_ok()).collect();
    let state = if hosts == 0 {
        ModuleState::NoHosts
    } else if plan_failed || (planned > 0 && unreachable == planned) {
        ModuleState::NotReached {
            changes: if plan_failed { fresh_changes } else { changes },
        }
    } else if changes == 0 && failing.is_empty() {
        ModuleState::Converged
    } else if changes == 0 {
        ModuleState::Unhealthy {
            status: kbz_core::health::worst(
                &failing.iter().map(|k| (**k).clone()).collect::<Vec<_>>(),
            ),
            failing: failing.len(),
            code: failing.iter().find_map(|k| k.code),
        }
    } else if changes >= fresh_changes
        || (!checks.is_empty() && checks.iter().all(|k| !k.is_ok() && k.host != CLUSTER))
    {
        ModuleState::NotInstalled { changes }
    } else {
        ModuleState::Drifted { changes }
    };
    ModuleRow {
        module: c.module(),
        name: c.name().to_string(),
        hosts,
        state,
    }
}

/// Operations of the plan per module number.
pub fn changes_by_module(r: &RunReport) -> BTreeMap<u8, usize> {
    let mut m = BTreeMap::new();
    for p in &r.plan.hosts {
        *m.entry(p.module).or_default() += p.changes.len();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::health::HealthCheck;
    use kbz_core::plan::{Change, HostPlan, Plan};
    use kbz_core::resource::Op;

    fn report(component: &str, hosts: &[(&str, usize, bool)]) -> RunReport {
        RunReport {
            plan: Plan {
                hosts: hosts
                    .iter()
                    .map(|(h, n, unreachable)| HostPlan {
                        host: h.to_string(),
                        module: 4,
                        component: component.into(),
                        unreachable: *unreachable,
                        changes: (0..*n)
                            .map(|i| Change {
                                resource: format!("file:/x{i}"),
                                op: Op::RemoveFile {
                                    path: format!("/x{i}"),
                                },
                                undo: Vec::new(),
                                diff: None,
                            })
                            .collect(),
                    })
                    .collect(),
            },
            ..RunReport::default()
        }
    }

    fn health(checks: Vec<HealthCheck>) -> HealthReport {
        HealthReport {
            cluster: "example".into(),
            status: kbz_core::health::worst(&checks),
            checks,
            round_trips: crate::health::RoundTrips {
                total: 0,
                max_per_host: 0,
                per_host: Default::default(),
            },
            unreachable: Vec::new(),
            duration_ms: 0,
        }
    }

    #[test]
    fn each_state_comes_from_the_plan_the_fresh_plan_and_the_checks() {
        let ctx = kbz_testkit::example_context(Vec::<String>::new());
        let etcd = kbz_stack::components()
            .into_iter()
            .find(|c| c.name() == "etcd")
            .expect("etcd");
        let fresh = report(
            "etcd",
            &[("db1", 6, true), ("db2", 6, true), ("db3", 6, true)],
        );
        let ok = |h: &str| HealthCheck::ok("etcd", h, "member", "ok");
        let down = |h: &str| {
            let mut c = ok(h);
            c.status = HealthStatus::Down;
            c.code = Some(Code::E036);
            c
        };
        let state = |r: &RunReport, h: Option<&HealthReport>| {
            judge(etcd.as_ref(), &ctx, r, &fresh, h, false).state
        };
        let all_ok = health(vec![ok("db1"), ok("db2"), ok("db3")]);
        // Offline: every host planned as fresh, nothing known.
        assert_eq!(state(&fresh, None), ModuleState::NotReached { changes: 18 });
        // Everything a fresh host needs is planned.
        let r = report(
            "etcd",
            &[("db1", 6, false), ("db2", 6, false), ("db3", 6, false)],
        );
        assert_eq!(state(&r, None), ModuleState::NotInstalled { changes: 18 });
        // Some of it differs.
        let r = report(
            "etcd",
            &[("db1", 0, false), ("db2", 2, false), ("db3", 0, false)],
        );
        assert_eq!(
            state(&r, Some(&all_ok)),
            ModuleState::Drifted { changes: 2 }
        );
        // Nothing differs and every check passes.
        let r = report(
            "etcd",
            &[("db1", 0, false), ("db2", 0, false), ("db3", 0, false)],
        );
        assert_eq!(state(&r, Some(&all_ok)), ModuleState::Converged);
        // Nothing differs but a member is down.
        let sick = health(vec![ok("db1"), down("db2"), ok("db3")]);
        assert_eq!(
            state(&r, Some(&sick)),
            ModuleState::Unhealthy {
                status: HealthStatus::Down,
                failing: 1,
                code: Some(Code::E036)
            }
        );
        assert_eq!(
            ModuleState::Drifted { changes: 2 }.label(),
            "drifted: 2 changes"
        );
    }
}
