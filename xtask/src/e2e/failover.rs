//! e2e: every kbz-failover scenario once on the lab, run by the kbz-failover binary itself
//! (power cuts through `cargo xtask lab kill|start` in the lab's `[failover]`), judged by the
//! default `[failover]` budgets: the binary exits non-zero outside them, and the figures of
//! each run are kept for the summary table at the end.

use anyhow::{ensure, Context as _, Result};
use fs_err as fs;
use std::process::Command;

use super::{built, step, Figures};
use crate::lab::LabInfo;

/// The scenarios and how long each fault lasts, in seconds: every crash, partition and
/// switchover of PostgreSQL, etcd, Redis, the VIP holder and HAProxy, and the crash of the
/// Galera node the MariaDB VIP writes to and of the RabbitMQ node leading the scratch queue.
pub const SUITE: &[(&str, u64)] = &[
    ("postgres-leader-partition", 30),
    ("postgres-leader-crash", 20),
    ("postgres-switchover", 20),
    ("etcd-member-crash", 20),
    ("redis-master-crash", 20),
    ("redis-master-partition", 20),
    ("vip-holder-crash", 20),
    ("haproxy-down", 20),
    ("galera-node-crash", 20),
    ("rabbitmq-node-crash", 20),
];

/// The lab's power commands, as an operator would write IPMI ones.
pub fn power_section() -> Result<String> {
    let me = std::env::current_exe().context("xtask's own path")?;
    let me = kbz_core::shell::quote(&me.display().to_string());
    Ok(format!(
        "\n[failover]\npower_off = \"{} lab kill {{host}}\"\npower_on = \"{} lab start {{host}}\"\n",
        me.replace('\\', "\\\\").replace('"', "\\\""),
        me.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Runs [`SUITE`] through `kbz-failover run SCENARIO --yes --json`; every run must pass
/// inside its budget, with acknowledged writes, and every replica streaming again.
pub fn suite(info: &LabInfo, fig: &mut Figures) -> Result<()> {
    let bin = built("kbz-failover")?;
    let mut cfg = fs::read_to_string(&info.config)?;
    if !cfg.contains("[failover]") {
        cfg.push_str(&power_section()?);
        fs::write(&info.config, cfg)?;
    }
    let inv = info.servers_tsv.display().to_string();
    for (name, secs) in SUITE {
        step(&format!(
            "failover: {name} under write load ({secs} s fault), judged by the [failover] budgets"
        ));
        let out = Command::new(&bin)
            .args(["run", name, "--inventory", &inv, "--yes", "--json"])
            .args(["--duration", &secs.to_string()])
            .output()
            .context("cannot run kbz-failover")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let outcome: serde_json::Value = serde_json::from_str(&stdout).with_context(|| {
            format!("kbz-failover {name} printed no JSON outcome:\n{stdout}\n{stderr}")
        })?;
        let runs: Vec<kbz_faults::RunReport> = serde_json::from_value(
            outcome
                .get("runs")
                .cloned()
                .with_context(|| format!("kbz-failover {name}: no `runs` in the outcome"))?,
        )
        .with_context(|| format!("kbz-failover {name}: unreadable `runs`"))?;
        for r in &runs {
            println!("{}", crate::failover::run_line(r));
        }
        let passed = outcome
            .get("passed")
            .and_then(|p| p.as_bool())
            .with_context(|| format!("kbz-failover {name}: no `passed` in the outcome"))?;
        ensure!(
            out.status.code() == Some(0) && passed,
            "{name}: outside its budget or failed (exit {:?}): breaches {}, errors {}, not healed {}\n{stderr}",
            out.status.code(),
            outcome["breaches"],
            outcome["errors"],
            outcome["not_healed"]
        );
        let r = runs
            .into_iter()
            .next()
            .with_context(|| format!("kbz-failover {name}: no run in the outcome"))?;
        ensure!(
            r.vip.acked > 0,
            "{name}: no write was acknowledged through the VIP"
        );
        ensure!(
            r.victim_streaming_secs.is_some(),
            "{name}: the cluster was not healthy again with the victim back"
        );
        fig.failovers.push(r);
    }
    Ok(())
}

/// The figures of every scenario, one line each, for the e2e summary.
pub fn table(runs: &[kbz_faults::RunReport]) -> String {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    let mut s = format!(
        "{:<26} {:>8} {:>5} {:>6} {:>9} {:>11} {:>9} {:>7}\n",
        "scenario", "acked", "lost", "unexp", "max gap s", "new leader", "VIP moved", "back s"
    );
    for r in runs {
        s.push_str(&format!(
            "{:<26} {:>8} {:>5} {:>6} {:>9.1} {:>11} {:>9} {:>7}\n",
            r.scenario,
            r.vip.acked,
            kbz_faults::budget::lost(r),
            r.vip.unexpected,
            r.max_write_gap_secs,
            opt(r.new_leader_secs),
            opt(r.vip_moved_secs),
            opt(r.victim_streaming_secs)
        ));
    }
    s
}
