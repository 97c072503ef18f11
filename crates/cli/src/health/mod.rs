//! kbz-health's library half: "is the cluster healthy?" for every binary and the menu.
//! [`check`] connects to every host the selected components apply to (concurrently), runs
//! one batched script per host ([`kbz_core::health_run::collect`]) and returns a
//! [`HealthReport`]: rows with ok/degraded/down, E-code and fix, the round trips per host,
//! and the exit code it maps to. [`output`] prints it, [`prom`] writes the node_exporter
//! textfile, [`serve`] answers `GET /metrics`, [`state`] turns runs into transition alerts,
//! [`timer`] installs the systemd timer that runs it every minute.

pub mod command;
pub mod output;
pub mod prom;
pub mod serve;
pub mod state;
pub mod timer;

use kbz_core::executor::Connector;
use kbz_core::health::{self, HealthCheck, HealthStatus};
use kbz_core::{Component, Context};
use kbz_errors::{Code, Diagnostic};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::{exit, Failure};

/// Round trips of one health run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoundTrips {
    /// Commands run over every host.
    pub total: u32,
    /// The most commands run on one host (1: one batched script per host).
    pub max_per_host: u32,
    /// Commands run per host (0: the host could not be reached).
    pub per_host: BTreeMap<String, u32>,
}

/// The outcome of one health run.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The cluster's name.
    pub cluster: String,
    /// The worst status of every check.
    pub status: HealthStatus,
    /// Every check, component by component in module order.
    pub checks: Vec<HealthCheck>,
    /// Round trips.
    pub round_trips: RoundTrips,
    /// Hosts that could not be asked.
    pub unreachable: Vec<String>,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
}

impl HealthReport {
    /// The exit code: 0 healthy, 1 degraded, 2 down, 3 when no host could be asked.
    pub fn exit_code(&self) -> u8 {
        if !self.round_trips.per_host.is_empty()
            && self.unreachable.len() == self.round_trips.per_host.len()
        {
            return exit::UNREACHABLE;
        }
        match self.status {
            HealthStatus::Ok => exit::OK,
            HealthStatus::Degraded => exit::DEGRADED,
            HealthStatus::Down => exit::DOWN,
        }
    }

    /// Checks that do not pass.
    pub fn failing(&self) -> impl Iterator<Item = &HealthCheck> {
        self.checks.iter().filter(|c| !c.is_ok())
    }
}

/// The components to check: all, or the one `--component` names (E010 with the nearest
/// name otherwise).
pub fn select(
    components: Vec<Arc<dyn Component>>,
    only: Option<&str>,
) -> Result<Vec<Arc<dyn Component>>, Failure> {
    let Some(name) = only else {
        return Ok(components);
    };
    if components.iter().any(|c| c.name() == name) {
        return Ok(components
            .into_iter()
            .filter(|c| c.name() == name)
            .collect());
    }
    let names: Vec<&str> = components.iter().map(|c| c.name()).collect();
    let nearest = names
        .iter()
        .min_by(|a, b| strsim::levenshtein(name, a).cmp(&strsim::levenshtein(name, b)))
        .copied()
        .unwrap_or("base");
    Err(Failure::input(vec![Diagnostic::new(
        Code::E010,
        format!("unknown component `{name}`; known: {}", names.join(", ")),
    )
    .hint(format!("did you mean `{nearest}`?"))]))
}

/// Checks the cluster: connects to every host a component applies to, runs one batched
/// script per host, judges on the controller.
pub async fn check(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    connector: &dyn Connector,
) -> HealthReport {
    let started = Instant::now();
    let hosts: Vec<_> = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| components.iter().any(|c| c.applies_to(h)))
        .cloned()
        .collect();
    let connected = futures_join(
        hosts
            .iter()
            .map(|h| async move { (h.clone(), connector.connect(h).await) }),
    )
    .await;
    let unreachable: Vec<String> = connected
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(h, _)| h.hostname.clone())
        .collect();
    let collected = kbz_core::health_run::collect(ctx, components, connected).await;
    let per_host = collected.round_trips;
    let mut unreachable = unreachable;
    for c in &collected.checks {
        if c.component == "ssh" && !unreachable.contains(&c.host) {
            unreachable.push(c.host.clone());
        }
    }
    HealthReport {
        cluster: ctx.config.cluster.name.clone(),
        status: health::worst(&collected.checks),
        round_trips: RoundTrips {
            total: per_host.values().sum(),
            max_per_host: per_host.values().copied().max().unwrap_or(0),
            per_host,
        },
        checks: collected.checks,
        unreachable,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// Awaits every future concurrently; results in the order of the futures.
async fn futures_join<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut pending: Vec<_> = futs.map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, f) in results.iter_mut().zip(pending.iter_mut()) {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *slot = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
}
