//! e2e: the preflight on the fresh lab, before the first install. A foreign listener
//! (`python3 -m http.server 5432`) on a PostgreSQL host refuses the install with E077 naming
//! the host, the port and the process, and nothing changes; a memory minimum above what the
//! hosts have (a temporary kbz.toml) refuses it with E076; with the listener gone the
//! preflight passes and its table is printed. After the install, the converged re-run's
//! report carries a passing preflight and a port map whose every endpoint answers.

use anyhow::{ensure, Context as _, Result};
use fs_err as fs;
use std::path::Path;

use super::{eventually, install, json, on, step};
use crate::lab::LabInfo;

/// The port the foreign listener takes.
const PORT: u16 = 5432;

/// The findings of a refused run's `--json` output.
fn findings(report: &serde_json::Value) -> Result<Vec<serde_json::Value>> {
    report["preflight"]["findings"]
        .as_array()
        .cloned()
        .with_context(|| format!("the JSON report has no preflight.findings:\n{report:#}"))
}

/// No host got anything of kbz: no module 1 file, no Patroni config, no host lock left.
fn untouched(names: &[&str]) -> Result<()> {
    for h in names {
        for f in [
            kbz_base::SYSCTL_FILE,
            kbz_base::APT_PROXY_FILE,
            "/etc/patroni/config.yml",
            kbz_core::shell::HOST_LOCK_PATH,
        ] {
            on(h, &format!("test ! -e {f}"))
                .with_context(|| format!("{h}: {f} exists after a refused run"))?;
        }
    }
    Ok(())
}

/// Runs before the first install, on fresh hosts.
pub fn scenario(bin: &Path, info: &LabInfo, names: &[&str]) -> Result<()> {
    let inv = info.servers_tsv.display().to_string();
    let victim = info
        .hosts
        .iter()
        .find(|h| h.roles.iter().any(|r| r == "postgres"))
        .map(|h| h.name.clone())
        .context("the lab has no postgres host")?;

    step("preflight: a foreign listener on PostgreSQL's port refuses the install (E077: host, port, process)");
    let pid = on(
        &victim,
        &format!(
            "setsid python3 -m http.server {PORT} --bind 0.0.0.0 >/dev/null 2>&1 </dev/null & echo $!"
        ),
    )?;
    let listening = eventually(15, "the foreign listener", || {
        Ok(!on(&victim, &format!("ss -ltnH 'sport = :{PORT}'"))?.is_empty())
    });
    let r = listening.and_then(|_| install(bin, &["--inventory", &inv, "--yes", "--json"]));
    on(
        &victim,
        // By its pid, and whatever else still holds the port (setsid may have forked).
        &format!(
            "kill {pid} 2>/dev/null; for p in $(ss -ltnpH 'sport = :{PORT}' | grep -o 'pid=[0-9]*' | cut -d= -f2); do kill $p; done; \
             sleep 1; ! ss -ltnH 'sport = :{PORT}' | grep -q ."
        ),
    )
    .with_context(|| format!("{victim}: the foreign listener (pid {pid}) did not stop"))?;
    let r = r?;
    ensure!(
        r.code == 1,
        "the install ran over a foreign listener on {victim}:{PORT} (exit {}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    let hit = findings(&report)?.into_iter().find(|f| {
        f["host"] == victim.as_str()
            && f["check"] == format!("port {PORT}").as_str()
            && f["code"] == kbz_errors::Code::E077.to_string().as_str()
            && f["severity"] == "error"
            && f["detail"].as_str().is_some_and(|d| d.contains("python3"))
    });
    ensure!(
        hit.is_some(),
        "no E077 error naming {victim}, port {PORT} and python3:\n{report:#}"
    );
    ensure!(
        r.stderr.contains("nothing was changed"),
        "the refusal does not say nothing changed:\n{}",
        r.stderr
    );
    untouched(names)?;
    println!(
        "{victim}:{PORT} held by python3 refused the install: {}",
        hit.map(|f| f["detail"].to_string()).unwrap_or_default()
    );

    step("preflight: a memory minimum above what the hosts have refuses the install (E076)");
    let cfg = fs::read_to_string(&info.config)?;
    ensure!(
        cfg.matches("[preflight").count() == 4 && cfg.contains("[preflight.roles.postgres]\n"),
        "the lab kbz.toml's [preflight] tables changed: {cfg}"
    );
    // The lab's kbz.toml has the table already (its disk minimum): add the key inside it.
    let cfg = cfg.replacen(
        "[preflight.roles.postgres]\n",
        "[preflight.roles.postgres]\nmemory_mb = 100000000\n",
        1,
    );
    let cfg_path = info.dir.join("kbz-preflight.toml");
    fs::write(&cfg_path, cfg)?;
    let cfg_arg = cfg_path.display().to_string();
    let r = install(
        bin,
        &["--inventory", &inv, "--config", &cfg_arg, "--yes", "--json"],
    );
    let _ = fs::remove_file(&cfg_path);
    let r = r?;
    ensure!(
        r.code == 1,
        "the install ran below the memory minimum (exit {}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    let memory: Vec<String> = findings(&report)?
        .into_iter()
        .filter(|f| {
            f["check"] == "memory"
                && f["code"] == kbz_errors::Code::E076.to_string().as_str()
                && f["severity"] == "error"
                && f["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("(minimum 100000000 MiB for postgres)"))
        })
        .filter_map(|f| f["host"].as_str().map(String::from))
        .collect();
    let pg_hosts: Vec<String> = info
        .hosts
        .iter()
        .filter(|h| h.roles.iter().any(|r| r == "postgres"))
        .map(|h| h.name.clone())
        .collect();
    ensure!(
        memory == pg_hosts,
        "E076 memory errors on {memory:?}, expected every postgres host {pg_hosts:?}:\n{report:#}"
    );
    untouched(names)?;
    println!(
        "the memory minimum refused the install on {}",
        memory.join(", ")
    );

    step("preflight of the fresh lab passes (the table of what it found)");
    let r = install(bin, &["preflight", "--inventory", &inv])?;
    println!("{}", r.stdout.trim_end());
    ensure!(
        r.code == 0,
        "the preflight of the fresh lab failed (exit {}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    untouched(names)?;
    Ok(())
}

/// On the converged re-run's JSON report: the preflight ran and passed (kbz's own services
/// hold their ports), and every endpoint of the port map answers from the controller.
pub fn after_install(report: &serde_json::Value) -> Result<()> {
    step("postflight: the re-run's preflight passes and every port-map endpoint answers");
    let pre = &report["preflight"];
    ensure!(
        pre["status"] == "checked",
        "the re-run's report has no preflight:\n{report:#}"
    );
    let errors: Vec<&serde_json::Value> = pre["findings"]
        .as_array()
        .map(|f| f.iter().filter(|f| f["severity"] == "error").collect())
        .unwrap_or_default();
    ensure!(
        errors.is_empty(),
        "the converged lab fails its own preflight: {errors:#?}"
    );
    let map = report["port_map"]
        .as_array()
        .context("the re-run's report has no port_map")?;
    let silent: Vec<String> = map
        .iter()
        .filter(|e| e["reachable"] != true)
        .map(|e| format!("{} {} ({})", e["service"], e["address"], e["via"]))
        .collect();
    ensure!(
        !map.is_empty() && silent.is_empty(),
        "port-map endpoints that do not answer: {silent:#?}"
    );
    ensure!(
        map.iter().any(|e| e["service"] == "PostgreSQL primary"
            && e["via"]
                .as_str()
                .is_some_and(|v| v.starts_with("HAProxy on "))),
        "the port map has no PostgreSQL primary via HAProxy:\n{map:#?}"
    );
    println!("port map: {} endpoints, every one answers", map.len());
    Ok(())
}
