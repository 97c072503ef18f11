//! e2e: reinstallability. After `uninstall` (which keeps PostgreSQL's data directories),
//! an install on the same hosts (same inventory, state directory and secrets) converges
//! with the last primary leading again and every row it had, and a re-run changes nothing.
//! Then the lab is rebuilt from scratch (`lab down`, `lab up`: new hosts with new host
//! keys, the same inventory, state directory and secrets) with `[security] tls = false`:
//! `--start-from-module 1` brings the whole stack back and a re-run changes nothing (the
//! TLS migration scenario then turns TLS on over it).

use anyhow::{ensure, Context as _, Result};
use fs_err as fs;
use std::path::Path;

use super::{install, on, rerun_changes_nothing, step};
use crate::lab::LabInfo;

/// The canary table the reinstall must keep.
const CANARY: &str = "kbz_e2e_reinstall";

/// Writes the canary rows through the leader before the uninstall step.
pub fn before_uninstall(info: &LabInfo) -> Result<()> {
    step("reinstall: canary rows written before the uninstall");
    let leader = pg_leader(info)?;
    psql(
        &leader,
        &format!(
            "DROP TABLE IF EXISTS {CANARY}; CREATE TABLE {CANARY} (i int); \
             INSERT INTO {CANARY} SELECT generate_series(1, 1000);"
        ),
    )?;
    println!("1000 rows in {CANARY} on {leader}");
    Ok(())
}

/// Runs after the uninstall step.
pub fn after_uninstall(bin: &Path, info: &LabInfo) -> Result<()> {
    let inv = info.servers_tsv.display().to_string();
    step("reinstall after uninstall: the same hosts converge again over the kept data");
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
    rerun_changes_nothing(bin, &inv, "after the reinstall")?;
    let leader = pg_leader(info)?;
    let rows = psql(&leader, &format!("SELECT count(*) FROM {CANARY}"))?;
    ensure!(
        rows.trim() == "1000",
        "the reinstall lost rows: {CANARY} holds {} on the leader {leader}",
        rows.trim()
    );
    println!("reinstalled; {leader} leads with all 1000 canary rows; the re-run changed nothing");
    Ok(())
}

/// The lab rebuilt from scratch, then `--start-from-module 1`; returns the new lab.
pub fn after_rebuild(bin: &Path, info: &LabInfo, fig: &mut super::Figures) -> Result<LabInfo> {
    step("the lab rebuilt from scratch: lab down, lab up (new hosts, same inventory, state dir and secrets)");
    let secrets = info.dir.join(".kbz/secrets.toml");
    let (inventory, kept) = (
        fs::read_to_string(&info.servers_tsv)?,
        fs::read(&secrets).context("the state dir's secrets before the rebuild")?,
    );
    crate::lab::down()?;
    let info = crate::lab::up(3)?;
    ensure!(
        fs::read_to_string(&info.servers_tsv)? == inventory,
        "lab up wrote another inventory"
    );
    ensure!(
        fs::read(&secrets)? == kept,
        "the secrets changed over the rebuild"
    );
    let inv = info.servers_tsv.display().to_string();
    // The rebuilt lab runs plaintext first: the TLS migration scenario turns TLS on over it.
    super::tls_migration::set_tls(&info, false)?;
    step("rebuilt lab (tls = false): --start-from-module 1 brings the whole stack back");
    let (r, apt) = super::apt_during(|| {
        install(
            bin,
            &["--inventory", &inv, "--yes", "--start-from-module", "1"],
        )
    })?;
    fig.rebuilt_install_apt = apt;
    ensure!(
        r.code == 0,
        "the install on the rebuilt lab failed ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    println!("{}", r.stdout.trim_end());
    println!(
        "apt proxy during the rebuilt lab's install: {}",
        super::apt_line(apt)
    );
    step("rebuilt lab: a re-run changes nothing");
    rerun_changes_nothing(bin, &inv, "on the rebuilt lab")?;
    println!("rebuilt; the re-run changed nothing");
    Ok(info)
}

/// The running Patroni leader's name.
pub(super) fn pg_leader(info: &LabInfo) -> Result<String> {
    let first = &info.hosts.first().context("the lab has no host")?.name;
    let list = on(first, "patronictl -c /etc/patroni/config.yml list -f json")?;
    let members: Vec<serde_json::Value> = serde_json::from_str(&list)?;
    members
        .iter()
        .find(|m| m["Role"] == "Leader" && m["State"] == "running")
        .and_then(|m| m["Member"].as_str())
        .map(str::to_string)
        .with_context(|| format!("no running Patroni leader: {list}"))
}

/// `sql` as the postgres OS user on `host` (peer authentication, no password).
pub(super) fn psql(host: &str, sql: &str) -> Result<String> {
    on(
        host,
        &format!(
            "cd / && runuser -u postgres -- psql -XAtqc {}",
            kbz_core::shell::quote(sql)
        ),
    )
}
