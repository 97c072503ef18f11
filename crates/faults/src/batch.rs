//! Several runs of one scenario as a binary runs them: one after the other until `runs` are
//! done or the interrupt (Ctrl-C) fires, then, whatever happened, every fault the scenario can
//! inject is undone on every host and the scratch data is removed once the service is healthy
//! again. The interrupt is any future, so the binaries pass `tokio::signal::ctrl_c()` and the
//! tests a real SIGINT to a real process.

use crate::run::{run_once, wait_healthy};
use crate::scenario::{RunReport, Scenario, Service, Target, Timing};
use crate::{cleanup, postgres, redis};
use kbz_errors::HasCode;
use std::future::Future;

/// What [`run_all`] tells its caller while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A run ended.
    Run(&'a RunReport),
    /// The interrupt fired during a run: the heal starts now.
    Interrupted,
}

/// The runs, whether they were interrupted, and what could not be undone.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Batch {
    /// Every completed run.
    pub reports: Vec<RunReport>,
    /// The interrupt fired.
    pub interrupted: bool,
    /// Faults or scratch data that could not be removed (`what: E-code error`); empty when
    /// the fleet is as before.
    pub not_healed: Vec<String>,
}

/// Runs `s` `runs` times against `t` unless `interrupt` completes first, then heals every
/// fault of `s` on every host and removes the scratch data.
pub async fn run_all<I>(
    s: &Scenario,
    t: &Target,
    timing: &Timing,
    runs: u32,
    interrupt: I,
    mut progress: impl FnMut(Progress<'_>),
) -> Batch
where
    I: Future<Output = ()>,
{
    let mut b = Batch::default();
    tokio::pin!(interrupt);
    for n in 1..=runs {
        tokio::select! {
            r = run_once(s, t, timing, n) => {
                progress(Progress::Run(&r));
                b.reports.push(r);
            }
            _ = &mut interrupt => {
                b.interrupted = true;
                progress(Progress::Interrupted);
                break;
            }
        }
    }
    b.not_healed = cleanup::heal_all(s, t)
        .await
        .into_iter()
        .map(|(h, e)| format!("{h}: {} {e}", e.code()))
        .collect();
    let scratch = async {
        let svc = t.service(s)?;
        wait_healthy(svc.as_ref(), timing.healthy_within, 1).await?;
        cleanup::drop_scratch(s, t).await
    };
    if let Err(e) = scratch.await {
        let what = match s.service() {
            Service::Redis => format!("scratch keys {}*", redis::PREFIX),
            Service::Kubernetes => "the Kubernetes API through its VIP".to_string(),
            Service::Mariadb => format!("scratch table {} (MariaDB)", crate::mariadb::TABLE),
            Service::Rabbitmq => format!("scratch queue {}", crate::rabbitmq::QUEUE),
            Service::Postgres => format!("scratch table {}", postgres::TABLE),
        };
        b.not_healed.push(format!("{what}: {} {e}", e.code()));
    }
    b
}
