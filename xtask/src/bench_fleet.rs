//! `cargo xtask bench fleet --hosts N --rtt-ms R --forks F`: a fake fleet (kbz-testkit's
//! FakeHosts) behind a connector that sleeps R ms per SSH round trip. For 10, 100 and 1,000
//! hosts (up to N) it reports the planning time of the whole stack (a dry-run of every
//! component, roles dealt as in the example inventory), the wall time of a converged
//! re-run of module 1 against the ideal (round trips per host x R x hosts / F), and the
//! process's peak memory. Figures for closing notes; nothing here is asserted.

use anyhow::Result;
use kbz_core::executor::{Cmd, Facts, Output};
use kbz_core::resource::{Observed, Op};
use kbz_core::{
    Component, Connector, Context, Engine, ExecError, Executor, Host, Inventory, Resource,
    RunOptions,
};
use kbz_testkit::FakeConnector;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A host whose every round trip first waits the connector's latency.
#[derive(Debug)]
struct Slow {
    inner: Arc<dyn Executor>,
    rtt: Arc<AtomicU64>,
}

impl Slow {
    async fn wait(&self) {
        let ms = self.rtt.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

#[kbz_core::async_trait]
impl Executor for Slow {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.wait().await;
        self.inner.run(cmd).await
    }
    async fn put_file(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
    ) -> Result<(), ExecError> {
        self.wait().await;
        self.inner.put_file(path, content, mode, owner).await
    }
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ExecError> {
        self.wait().await;
        self.inner.read_file(path).await
    }
    async fn facts(&self) -> Result<Facts, ExecError> {
        self.wait().await;
        self.inner.facts().await
    }
    async fn probe(&self, resources: &[Resource]) -> Result<Vec<Observed>, ExecError> {
        self.wait().await;
        self.inner.probe(resources).await
    }
    async fn apply(&self, op: &Op) -> Result<(), ExecError> {
        self.wait().await;
        self.inner.apply(op).await
    }
    async fn lock_host(&self, path: &str, owner: &str) -> Result<Option<String>, ExecError> {
        self.wait().await;
        self.inner.lock_host(path, owner).await
    }
    async fn unlock_host(&self, path: &str, owner: &str) -> Result<(), ExecError> {
        self.wait().await;
        self.inner.unlock_host(path, owner).await
    }
    fn round_trips(&self) -> u64 {
        self.inner.round_trips()
    }
}

struct SlowFleet {
    fake: Arc<FakeConnector>,
    rtt: Arc<AtomicU64>,
}

#[kbz_core::async_trait]
impl Connector for SlowFleet {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn Executor>, ExecError> {
        let inner = self.fake.connect(host).await?;
        Ok(Arc::new(Slow {
            inner,
            rtt: self.rtt.clone(),
        }))
    }
}

/// `n` hosts with the example inventory's roles dealt in turn.
fn inventory(n: usize) -> Inventory {
    let example = kbz_testkit::example_inventory();
    let hosts = (0..n)
        .map(|i| {
            let model = &example.hosts[i % example.hosts.len()];
            let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + i as u32 + 10);
            let mut h = model.clone();
            h.hostname = format!("{}-{i}", model.hostname);
            h.ip = ip.into();
            h
        })
        .collect();
    Inventory {
        path: "bench".into(),
        hosts,
    }
}

/// The peak resident memory of this process (VmHWM), in MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs the table.
pub fn run(max_hosts: usize, rtt_ms: u64, forks: usize) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stack = kbz_stack::components();
    let secrets: Vec<String> = stack.iter().flat_map(|c| c.secret_names()).collect();
    let example = kbz_testkit::example_context(secrets);
    let mut sizes: Vec<usize> = [10, 100, 1000]
        .into_iter()
        .filter(|n| *n < max_hosts)
        .collect();
    sizes.push(max_hosts);
    println!(
        "bench fleet: {rtt_ms} ms per round trip, forks {forks}, {} build",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:>6}  {:>10}  {:>8}  {:>12}  {:>9}  {:>9}  {:>8}",
        "hosts", "plan stack", "ops", "rerun rt/host", "rerun", "ideal", "peak MiB"
    );
    for n in sizes {
        let inv = inventory(n);
        let fake = Arc::new(FakeConnector::debian_fleet(&inv.hosts));
        let rtt = Arc::new(AtomicU64::new(0));
        let fleet = Arc::new(SlowFleet {
            fake: fake.clone(),
            rtt: rtt.clone(),
        });
        let ctx = Context::new(inv, (*example.config).clone(), (*example.secrets).clone());
        let opts = RunOptions {
            forks,
            ..RunOptions::default()
        };
        // Planning of the whole stack, with no latency: the controller's own cost.
        let planner = Engine::new(ctx.clone(), stack.clone(), fleet.clone());
        let t = Instant::now();
        let plan = rt.block_on(planner.run(&RunOptions {
            dry_run: true,
            ..opts.clone()
        }))?;
        let plan_s = t.elapsed().as_secs_f64();
        // Module 1 converged (no latency), then its re-run with latency.
        let base: Vec<Arc<dyn Component>> = vec![Arc::new(kbz_base::Base)];
        let engine = Engine::new(ctx, base, fleet.clone());
        rt.block_on(engine.run(&opts))?;
        for (_, h) in fake.hosts() {
            h.reset_round_trips();
        }
        rtt.store(rtt_ms, Ordering::Relaxed);
        let t = Instant::now();
        let rerun = rt.block_on(engine.run(&opts))?;
        let rerun_s = t.elapsed().as_secs_f64();
        let per_host = rerun.round_trips as f64 / n as f64;
        let ideal = per_host * rtt_ms as f64 / 1000.0 * n as f64 / forks.max(1) as f64;
        println!(
            "{n:>6}  {plan_s:>9.3}s  {:>8}  {per_host:>13.1}  {rerun_s:>8.2}s  {ideal:>8.2}s  {:>8.1}",
            plan.plan.operations(),
            peak_mib()
        );
    }
    Ok(ExitCode::SUCCESS)
}
