//! e2e: the embedding example (`examples/embed`, issue 17) against the lab's hosts. The
//! binary cargo built installs Debian's prometheus-node-exporter over SSH (first run changes
//! something, the second run 0), node_exporter answers `GET /metrics` on port 9100 of every
//! host's lab address (and listens on no other address), its health check passes, and the
//! uninstall leaves no package, drop-in or open port behind (a second uninstall changes
//! nothing).

use anyhow::{ensure, Context as _, Result};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{built, changed, eventually, on, step};
use crate::lab::LabInfo;

/// The example's package and binary.
const EXAMPLE: &str = "kbz-embed-example";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn example(bin: &Path, info: &LabInfo, state: &Path, extra: &[&str]) -> Result<Run> {
    let out = Command::new(bin)
        .arg("--inventory")
        .arg(&info.servers_tsv)
        .arg("--config")
        .arg(&info.config)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .output()
        .with_context(|| format!("cannot run {EXAMPLE}"))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A run with `--json` that must succeed; returns its `summary.changed`.
fn changed_by(bin: &Path, info: &LabInfo, state: &Path, extra: &[&str], what: &str) -> Result<u64> {
    let mut args = extra.to_vec();
    args.push("--json");
    let r = example(bin, info, state, &args)?;
    ensure!(
        r.code == 0,
        "{what} failed ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&r.stdout).with_context(|| {
        format!(
            "{EXAMPLE} printed no JSON report for {what}:\n{}\n{}",
            r.stdout, r.stderr
        )
    })?;
    changed(&report)
}

/// `GET /metrics` on `ip:9100` from the controller: the status line and body.
fn scrape(ip: IpAddr) -> Result<String> {
    let addr = SocketAddr::new(ip, kbz_embed_example::PORT);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Whether anything accepts a TCP connection on `ip:9100` (a refused connection: no).
fn port_open(ip: IpAddr) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::new(ip, kbz_embed_example::PORT),
        Duration::from_secs(3),
    )
    .is_ok()
}

pub fn scenario(info: &LabInfo) -> Result<()> {
    let bin = built(EXAMPLE)?;
    let state = info.dir.join("embed-state");

    step("embedding example: first run installs node_exporter on every host");
    let first = changed_by(&bin, info, &state, &[], "the example's first run")?;
    ensure!(first > 0, "the example's first run changed nothing");
    println!("first run: {first} operations");

    step("embedding example: second run changes nothing");
    let second = changed_by(&bin, info, &state, &[], "the example's second run")?;
    ensure!(
        second == 0,
        "the example's second run changed {second} operations"
    );
    let planned = changed_by(&bin, info, &state, &["--dry-run"], "the example's dry-run")?;
    ensure!(
        planned == 0,
        "the example's dry-run plans {planned} operations"
    );
    println!("second run: 0 changed; dry-run: 0 planned");

    step("embedding example: node_exporter answers on :9100 of each host's lab address only");
    for h in &info.hosts {
        let ip = IpAddr::V4(h.ip);
        let mut last = String::new();
        eventually(30, &format!("{}: /metrics on {ip}:9100", h.name), || {
            last = scrape(ip)?;
            Ok(last.starts_with("HTTP/1.") && last.contains(" 200 ") && last.contains("\nnode_"))
        })
        .with_context(|| last.chars().take(300).collect::<String>())?;
        let listening = on(
            &h.name,
            "ss -Hltn 'sport = :9100' | awk '{print $4}' | sort -u",
        )?;
        ensure!(
            listening == format!("{ip}:9100"),
            "{}: node_exporter listens on {listening:?}, expected {ip}:9100 only",
            h.name
        );
    }
    let health = example(&bin, info, &state, &["--health", "--json"])?;
    ensure!(
        health.code == 0,
        "the example's health check failed ({}):\n{}\n{}",
        health.code,
        health.stdout,
        health.stderr
    );
    println!("every host serves /metrics on its lab address; the health check passes");

    step("embedding example: uninstall removes the package, the drop-in and the port");
    let removed = changed_by(
        &bin,
        info,
        &state,
        &["--uninstall"],
        "the example's uninstall",
    )?;
    ensure!(removed > 0, "the example's uninstall changed nothing");
    for h in &info.hosts {
        let st = on(
            &h.name,
            &format!(
                "dpkg-query -W -f '${{Status}}' {} 2>/dev/null || true",
                kbz_embed_example::PACKAGE
            ),
        )?;
        ensure!(
            st != "install ok installed",
            "{}: {} is still installed ({st}) after uninstall",
            h.name,
            kbz_embed_example::PACKAGE
        );
        on(
            &h.name,
            &format!("test ! -e {}", kbz_embed_example::DROPIN_DIR),
        )
        .with_context(|| format!("{}: the drop-in directory is left", h.name))?;
        let active = on(
            &h.name,
            &format!("systemctl is-active {} || true", kbz_embed_example::SERVICE),
        )?;
        ensure!(active != "active", "{}: the exporter still runs", h.name);
        ensure!(
            !port_open(IpAddr::V4(h.ip)),
            "{}: port 9100 still accepts connections after uninstall",
            h.name
        );
    }
    let again = changed_by(
        &bin,
        info,
        &state,
        &["--uninstall"],
        "the example's second uninstall",
    )?;
    ensure!(
        again == 0,
        "the second uninstall changed {again} operations"
    );
    fs_err::remove_dir_all(&state)?;
    println!("uninstall: {removed} operations, nothing left; a second uninstall changes nothing");
    Ok(())
}
