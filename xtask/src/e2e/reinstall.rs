//! e2e: reinstallability. After `uninstall`, an install on the same hosts (same inventory,
//! state directory and secrets) converges, and a re-run changes nothing.

use anyhow::{ensure, Result};
use std::path::Path;

use super::{changed, cluster_changes, install, json, step};
use crate::lab::LabInfo;

/// Runs after the uninstall step.
pub fn after_uninstall(bin: &Path, info: &LabInfo) -> Result<()> {
    let inv = info.servers_tsv.display().to_string();
    step("reinstall after uninstall: the same hosts converge again");
    let r = install(bin, &["--inventory", &inv, "--yes"])?;
    ensure!(
        r.code == 0,
        "the install after uninstall failed ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    println!("{}", r.stdout.trim_end());
    step("reinstall: a re-run changes nothing");
    let r = install(bin, &["--inventory", &inv, "--yes", "--json"])?;
    ensure!(
        r.code == 0,
        "the re-run after the reinstall failed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    let (ops, cluster) = (changed(&report)?, cluster_changes(&report)?);
    ensure!(
        ops == 0 && cluster == 0,
        "the re-run after the reinstall changed {ops} operations and made {cluster} cluster changes:\n{}",
        r.stdout
    );
    println!("reinstalled; the re-run changed nothing");
    Ok(())
}
