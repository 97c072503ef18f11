//! `cargo xtask bench`: measurements reported in closing notes, never asserted in tests.
//! `bench plan` times planning module 1 for a large fake fleet (dry-run over FakeHosts);
//! `bench fleet` (in `fleet.rs`) fakes a fleet with latency per round trip.

use anyhow::{bail, Result};
use kbz_core::{Component, Config, Context, Engine, Host, Inventory, Role, RunOptions, Secrets};
use kbz_testkit::FakeConnector;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// `bench` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure: `plan` (module 1 for a fake fleet) or `lab` (real hosts, root only).
    what: String,
    /// Fleet size for `plan`; the largest row of `fleet`'s table.
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// `fleet`: latency injected per SSH round trip, in milliseconds.
    #[arg(long, default_value_t = 20)]
    rtt_ms: u64,
    /// `fleet`: hosts worked on concurrently.
    #[arg(long, default_value_t = 10)]
    forks: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.what.as_str() {
        "plan" => plan(args.hosts),
        "fleet" => crate::bench_fleet::run(args.hosts, args.rtt_ms, args.forks),
        "lab" => lab(),
        other => bail!("unknown benchmark `{other}`: use `plan`, `fleet` or `lab`"),
    }
}

fn plan(n: usize) -> Result<ExitCode> {
    let hosts: Vec<Host> = (0..n)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + i as u32 + 10);
            Host::new(&format!("node{i}"), ip.into(), &[Role::K8sWorker])
        })
        .collect();
    let fleet = Arc::new(FakeConnector::debian_fleet(&hosts));
    let inv = Inventory {
        path: "bench".into(),
        hosts,
    };
    let ctx = Context::new(inv, Config::default(), Secrets::in_memory());
    let engine = Engine::new(
        ctx,
        vec![Arc::new(kbz_base::Base) as Arc<dyn Component>],
        fleet,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let opts = RunOptions {
        dry_run: true,
        forks: 64,
        ..RunOptions::default()
    };
    // One warm-up, then the measured runs.
    rt.block_on(engine.run(&opts))?;
    let mut best = f64::MAX;
    let mut ops = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = rt.block_on(engine.run(&opts))?;
        best = best.min(t.elapsed().as_secs_f64());
        ops = r.plan.operations();
    }
    println!("bench plan: module 1 for {n} fake hosts: {ops} operations planned in {:.3} s (best of 3, {} build)",
        best, if cfg!(debug_assertions) { "debug" } else { "release" });
    Ok(ExitCode::SUCCESS)
}

/// Lab up (warm cache), first install, converged re-run and its round trips on 3 lab hosts.
fn lab() -> Result<ExitCode> {
    let f = crate::e2e::with_lab(false, |info, fig| {
        let bin = crate::e2e::kbz_install()?;
        crate::e2e::install_and_rerun(&bin, info, fig)
    })?;
    println!(
        "bench lab: lab up {:.1} s, first install {:.1} s, converged re-run {:.2} s, {:.1} SSH round trips per host on the re-run; apt proxy during the first install: {}",
        f.lab_up, f.first_install, f.rerun, f.rerun_round_trips_per_host,
        crate::e2e::apt_line(f.first_install_apt)
    );
    Ok(ExitCode::SUCCESS)
}
