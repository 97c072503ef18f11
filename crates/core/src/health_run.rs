//! Running health probes on hosts: [`collect`] runs every component's probes as one batched
//! script per host (concurrently) and hands each component the answers of its hosts;
//! [`check_component`] does the same for one component on a set of hosts.

use kbz_errors::Code;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::component::{Component, HostExec};
use crate::context::Context;
use crate::executor::{Cmd, ExecError, Executor};
use crate::health::{
    host_script, split_output, HealthCheck, HealthRaw, HealthStatus, HostAnswer, Probe, ProbeOutput,
};
use crate::inventory::Host;

/// Components selected for a health run and the hosts each applies to.
fn probes_for(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    host: &Host,
) -> Vec<(String, Probe)> {
    components
        .iter()
        .filter(|c| c.applies_to(host))
        .flat_map(|c| {
            c.health_probes(ctx, host)
                .into_iter()
                .map(|p| (c.name().to_string(), p))
        })
        .collect()
}

/// The outcome of one health collection.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Every check, component by component in module order.
    pub checks: Vec<HealthCheck>,
    /// Commands run per host (one when the host answered, zero when it could not be reached).
    pub round_trips: BTreeMap<String, u32>,
}

/// An inventory host with its executor, or why it could not be connected.
pub type Connected = (Host, Result<Arc<dyn Executor>, ExecError>);

/// Timeout of the batched script on one host.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(45);

/// Runs the batched script once on every connected host (concurrently), then lets each
/// component judge the answers of its hosts. `hosts` holds every inventory host with its
/// executor or the reason it could not be connected; each unreachable host adds a degraded
/// `ssh` check (E011).
pub async fn collect(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    hosts: Vec<Connected>,
) -> Collected {
    let mut set = tokio::task::JoinSet::new();
    for (i, (host, exec)) in hosts.into_iter().enumerate() {
        let probes = probes_for(ctx, components, &host);
        set.spawn(async move {
            let exec = match exec {
                Ok(e) => e,
                Err(e) => return (i, host, Err(e.to_string()), 0),
            };
            if probes.is_empty() {
                return (i, host, Ok(BTreeMap::new()), 0);
            }
            let cmd = Cmd::new(host_script(&probes)).timeout(HOST_TIMEOUT);
            let r = exec.run(&cmd).await;
            // The executor's own count when it keeps one (SSH and fake hosts do).
            let trips = match exec.round_trips() {
                0 => 1,
                n => n as u32,
            };
            match r {
                Ok(o) => (i, host, Ok(split_output(&o.stdout_str())), trips),
                Err(e) => (i, host, Err(e.to_string()), trips),
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok(a) = j {
            answers.push(a);
        }
    }
    answers.sort_by_key(|a| a.0);
    let round_trips = answers
        .iter()
        .map(|(_, h, _, n)| (h.hostname.clone(), *n))
        .collect();
    let answers: Vec<HostAnswer> = answers
        .into_iter()
        .map(|(_, host, result, _)| HostAnswer { host, result })
        .collect();
    let mut checks = Vec::new();
    for a in &answers {
        if let Err(reason) = &a.result {
            checks.push(HealthCheck::failing(
                HealthStatus::Degraded,
                "ssh",
                &a.host.hostname,
                "reachable",
                format!("cannot ask {}: {reason}", a.host.hostname),
                Code::E011,
                format!(
                    "is {} powered on and reachable? `ssh {}` from this machine, then `kbz-install explain E011`",
                    a.host.hostname, a.host.ip
                ),
            ));
        }
    }
    for c in components {
        let mine: Vec<HostAnswer> = answers
            .iter()
            .filter(|a| c.applies_to(&a.host))
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        checks.extend(c.health_checks(ctx, &HealthRaw::new(c.name(), &mine)));
    }
    Collected {
        checks,
        round_trips,
    }
}

/// Runs `probes` of `component` on every host in one batched round trip each (concurrently)
/// and returns the answers in the order of `hosts`.
pub async fn answers(
    hosts: &[HostExec],
    component: &str,
    probes: impl Fn(&Host) -> Vec<Probe>,
) -> Vec<HostAnswer> {
    let mut set = tokio::task::JoinSet::new();
    for (i, hx) in hosts.iter().enumerate() {
        let probes: Vec<(String, Probe)> = probes(&hx.host)
            .into_iter()
            .map(|p| (component.to_string(), p))
            .collect();
        let hx = hx.clone();
        set.spawn(async move {
            let cmd = Cmd::new(host_script(&probes)).timeout(HOST_TIMEOUT);
            let r = match hx.exec.run(&cmd).await {
                Ok(o) => {
                    let mut m = split_output(&o.stdout_str());
                    // A test double that answers one probe's text without the markers.
                    if let ([(c, p)], true) = (probes.as_slice(), m.is_empty()) {
                        m.insert(
                            (c.clone(), p.name.clone()),
                            ProbeOutput {
                                text: o.stdout_str(),
                                status: o.status,
                            },
                        );
                    }
                    Ok(m)
                }
                Err(e) => Err(e.to_string()),
            };
            (
                i,
                HostAnswer {
                    host: hx.host,
                    result: r,
                },
            )
        });
    }
    let mut out = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok(a) = j {
            out.push(a);
        }
    }
    out.sort_by_key(|a| a.0);
    out.into_iter().map(|(_, a)| a).collect()
}

/// One component's checks on these hosts (the ones it applies to): its probes in one round
/// trip per host, judged by [`Component::health_checks`].
pub async fn check_component(
    ctx: &Context,
    component: &dyn Component,
    hosts: &[HostExec],
) -> Vec<HealthCheck> {
    let mine: Vec<HostExec> = hosts
        .iter()
        .filter(|h| component.applies_to(&h.host))
        .cloned()
        .collect();
    let answers = answers(&mine, component.name(), |h| component.health_probes(ctx, h)).await;
    component.health_checks(ctx, &HealthRaw::new(component.name(), &answers))
}
