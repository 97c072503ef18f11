//! e2e: kbz-health on the lab. Healthy after install (one round trip per host), degraded
//! while a replica is powered off (`lab kill`), healthy again after it rejoins (`lab start`),
//! `kbz-health serve` scraped over HTTP on loopback, and `kbz-health ports`: every endpoint
//! answers and nothing stray, then a redis-server planted on every address is E059.

use anyhow::{ensure, Context as _, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{built, eventually, step, Figures};
use crate::lab::{self, LabInfo};

struct Health {
    code: i32,
    report: serde_json::Value,
    stderr: String,
}

fn health(bin: &std::path::Path, inv: &str, extra: &[&str]) -> Result<Health> {
    let out = Command::new(bin)
        .args(["--inventory", inv, "--json", "--no-notify"])
        .args(extra)
        .output()
        .context("cannot run kbz-health")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .with_context(|| format!("kbz-health printed no JSON report:\n{stdout}\n{stderr}"))?;
    Ok(Health {
        code: out.status.code().unwrap_or(-1),
        report,
        stderr,
    })
}

/// The checks that do not pass, one line each.
fn failing(r: &serde_json::Value) -> Vec<String> {
    r["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["status"] != "ok")
                .map(|c| {
                    format!(
                        "{} {} {} {}: {} [{}]",
                        c["status"].as_str().unwrap_or(""),
                        c["host"].as_str().unwrap_or(""),
                        c["component"].as_str().unwrap_or(""),
                        c["check"].as_str().unwrap_or(""),
                        c["detail"].as_str().unwrap_or(""),
                        c["code"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The host of the first check named `check` of `component`.
fn host_of(r: &serde_json::Value, component: &str, check: &str) -> Option<String> {
    r["checks"].as_array()?.iter().find_map(|c| {
        (c["component"] == component && c["check"].as_str()?.starts_with(check))
            .then(|| c["host"].as_str().map(str::to_string))
            .flatten()
    })
}

pub fn scenario(info: &LabInfo, names: &[&str], fig: &mut Figures) -> Result<()> {
    let bin = built("kbz-health")?;
    let inv = info.servers_tsv.display().to_string();

    step("kbz-health: healthy after install, one round trip per host");
    let mut last = None;
    eventually(180, "kbz-health reports healthy", || {
        let h = health(&bin, &inv, &[])?;
        let ok = h.code == 0;
        last = Some(h);
        Ok(ok)
    })
    .with_context(|| {
        last.as_ref()
            .map(|h| {
                format!(
                    "last run exited {}: {:#?}\n{}",
                    h.code,
                    failing(&h.report),
                    h.stderr
                )
            })
            .unwrap_or_default()
    })?;
    let t = Instant::now();
    let h = health(&bin, &inv, &[])?;
    fig.health_run = t.elapsed().as_secs_f64();
    ensure!(h.code == 0, "not healthy: {:#?}", failing(&h.report));
    let rt = &h.report["round_trips"];
    ensure!(
        rt["max_per_host"] == 1 && rt["total"].as_u64() == Some(names.len() as u64),
        "expected one round trip per host: {rt}"
    );
    fig.health_checks = h.report["checks"].as_array().map(Vec::len).unwrap_or(0);
    let table = Command::new(&bin)
        .args(["--inventory", &inv, "--no-notify"])
        .output()?;
    println!("{}", String::from_utf8_lossy(&table.stdout).trim_end());

    step("kbz-health: degraded while a replica is powered off");
    let leader = host_of(&h.report, "postgres", "one leader").unwrap_or_default();
    let master = host_of(&h.report, "redis", "one master").unwrap_or_default();
    let vip = host_of(&h.report, "keepalived", "VIP postgres").unwrap_or_default();
    let victim = names
        .iter()
        .copied()
        .find(|n| *n != leader && *n != master && *n != vip)
        .or_else(|| names.iter().copied().find(|n| *n != leader))
        .context("no replica to power off")?
        .to_string();
    println!(
        "powering off {victim} (Patroni leader {leader}, Redis master {master}, VIP on {vip})"
    );
    lab::kill(&victim)?;
    let mut last = None;
    let degraded = eventually(120, "kbz-health reports degraded", || {
        let h = health(&bin, &inv, &[])?;
        let ok = h.code == 1
            && h.report["unreachable"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x == victim.as_str()))
            && h.report["status"] == "degraded";
        last = Some(h);
        Ok(ok)
    });
    let lines = last
        .as_ref()
        .map(|h| failing(&h.report))
        .unwrap_or_default();
    if let Err(e) = degraded {
        let _ = lab::start(&victim);
        return Err(e.context(format!("while {victim} was off: {lines:#?}")));
    }
    println!("degraded while {victim} is off:\n  {}", lines.join("\n  "));
    ensure!(
        lines.iter().any(|l| l.contains(&victim)
            && l.contains("replica streaming")
            && l.contains(&kbz_errors::Code::E038.to_string())),
        "the powered-off replica's streaming check is not degraded: {lines:#?}"
    );

    step("kbz-health: healthy again after the replica rejoins");
    lab::start(&victim)?;
    let t = Instant::now();
    let mut last = None;
    eventually(300, "kbz-health reports healthy after the rejoin", || {
        let h = health(&bin, &inv, &[])?;
        let ok = h.code == 0;
        last = Some(h);
        Ok(ok)
    })
    .with_context(|| {
        last.as_ref()
            .map(|h| format!("last run exited {}: {:#?}", h.code, failing(&h.report)))
            .unwrap_or_default()
    })?;
    fig.health_rejoin = t.elapsed().as_secs_f64();
    println!(
        "healthy again {:.1}s after {victim} booted",
        fig.health_rejoin
    );

    step("kbz-health serve: /metrics scraped over HTTP");
    let mut child = Command::new(&bin)
        .args([
            "--inventory",
            &inv,
            "--no-notify",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start kbz-health serve")?;
    let scraped = (|| -> Result<String> {
        let stderr = child.stderr.take().context("no stderr")?;
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("kbz-health: serving http://")
            .and_then(|s| s.strip_suffix("/metrics"))
            .with_context(|| format!("unexpected first line: {line}"))?
            .to_string();
        let mut s = std::net::TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })();
    let _ = child.kill();
    let _ = child.wait();
    let body = scraped?;
    ensure!(body.starts_with("HTTP/1.1 200"), "scrape failed:\n{body}");
    ensure!(
        body.contains("kbz_health_status{cluster=\"kbzlab\"} 0"),
        "the scrape does not say healthy:\n{body}"
    );
    for n in names {
        ensure!(
            body.contains(&format!(
                "kbz_replication_lag_bytes{{component=\"postgres\",host=\"{n}\"}}"
            )) || body.contains(&format!(
                "kbz_health_check{{component=\"postgres\",host=\"{n}\",check=\"one leader\"}} 1"
            )),
            "no replication figure for {n} in the scrape:\n{body}"
        );
    }
    println!(
        "/metrics: {} series scraped",
        body.lines().filter(|l| l.starts_with("kbz_")).count()
    );
    ports(&bin, &inv, names)
}

/// `kbz-health ports`: every endpoint answers and nothing listens where it should not; a
/// redis-server started on every address of one host (a database on a public interface) is
/// E059 naming it, exit 1; stopped by its pid, the check passes again.
fn ports(bin: &std::path::Path, inv: &str, names: &[&str]) -> Result<()> {
    let run = || -> Result<(i32, serde_json::Value)> {
        let out = Command::new(bin)
            .args(["ports", "--inventory", inv, "--json"])
            .output()
            .context("cannot run kbz-health ports")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = serde_json::from_str(&stdout).with_context(|| {
            format!(
                "kbz-health ports printed no JSON:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok((out.status.code().unwrap_or(-1), v))
    };
    step("kbz-health ports: every endpoint answers, nothing listens where it should not");
    let (code, v) = run()?;
    let map = v["port_map"].as_array().cloned().unwrap_or_default();
    ensure!(
        code == 0 && !map.is_empty() && v["stray_binds"] == serde_json::json!([]),
        "kbz-health ports: exit {code}:\n{v:#}"
    );
    ensure!(
        map.iter().all(|e| e["reachable"] == true),
        "an endpoint does not answer:\n{v:#}"
    );
    println!("{} endpoints answer, 0 stray binds", map.len());

    step("kbz-health ports: a redis-server on every address of one host is E059");
    let host = names[0];
    let pid = super::on(
        host,
        "redis-server --port 6390 --bind 0.0.0.0 --save '' --appendonly no --daemonize yes \
         --pidfile /run/kbz-e2e-stray.pid >/dev/null && sleep 1 && cat /run/kbz-e2e-stray.pid",
    )?;
    let planted = run();
    let stop = super::on(host, &format!("kill {pid} && rm -f /run/kbz-e2e-stray.pid"));
    let (code, v) = planted?;
    stop?;
    let strays = v["stray_binds"].as_array().cloned().unwrap_or_default();
    ensure!(
        code == 1
            && strays.len() == 1
            && strays[0]["host"] == host
            && strays[0]["address"] == "*:6390"
            && strays[0]["process"] == "redis-server",
        "kbz-health ports did not report the planted redis-server on {host} (exit {code}):\n{v:#}"
    );
    println!("the planted redis-server on {host} *:6390 is E059, exit 1");
    eventually(30, "kbz-health ports passes again", || Ok(run()?.0 == 0))?;
    Ok(())
}
