//! e2e: kbz-backup on the lab (issue 11; etcd and Redis, PostgreSQL when its backup is
//! registered). Canary keys in etcd and Redis, `run --full`, list and verify; the canaries
//! deleted, a restore refused without `--force` (E043, naming what it would stop), the dry-run,
//! the real restores (etcd re-formed from the snapshot with Patroni healthy afterwards, Redis
//! back with its replicas and Sentinels), `drill`, the cron line of `schedule install` run the
//! way cron runs it (`env -i` with cron's environment, `/bin/sh -c`), the webhook receiving
//! the results, and the bad inputs: no backup host (E041, exit 64), an unreachable repository
//! (E041, exit 3), `--at` before the first backup (E045, nothing stopped), a flipped byte
//! (`verify` names the artifact with E044). Prints size and time of each backup, restore and
//! drill.

use anyhow::{ensure, Context as _, Result};
use fs_err as fs;
use kbz_errors::Code;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{built, eventually, on, step, Receiver};
use crate::lab::LabInfo;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "kbz-backup printed no JSON (exit {}):\n{}\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }
}

fn kbz_backup(bin: &Path, inv: &str, args: &[&str]) -> Result<Out> {
    let out = Command::new(bin)
        .arg("--inventory")
        .arg(inv)
        .args(args)
        .output()
        .context("cannot run kbz-backup")?;
    Ok(Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The first E-code in a JSON document's `errors`.
fn first_code(v: &serde_json::Value) -> String {
    v["errors"][0]["code"].as_str().unwrap_or("").to_string()
}

/// redis-cli on `host` against its local Redis with kbz's password file.
fn redis(host: &str, args: &str) -> Result<String> {
    on(
        host,
        &format!(
            "REDISCLI_AUTH=\"$(cat {})\"; export REDISCLI_AUTH; redis-cli -h 127.0.0.1 {args}",
            kbz_redis::layout::REDIS_PASS
        ),
    )
}

/// The Redis master's host.
fn redis_master(names: &[&str]) -> Result<String> {
    for h in names {
        if redis(h, "INFO replication")?.contains("role:master") {
            return Ok(h.to_string());
        }
    }
    anyhow::bail!("no Redis master among {names:?}")
}

fn etcdctl(info: &LabInfo, host: &str, args: &str) -> Result<String> {
    let ip = info
        .hosts
        .iter()
        .find(|h| h.name == host)
        .map(|h| h.ip)
        .context("lab host")?;
    on(
        host,
        &format!("{{ {}; }} 2>&1", kbz_etcd::local_ctl(ip.into(), args)),
    )
}

/// Patroni healthy: one leader and two streaming replicas.
fn patroni_healthy(host: &str) -> Result<bool> {
    let list = on(host, "patronictl -c /etc/patroni/config.yml list -f json")?;
    let members: Vec<serde_json::Value> = serde_json::from_str(&list)?;
    let leaders = members.iter().filter(|m| m["Role"] == "Leader").count();
    let streaming = members
        .iter()
        .filter(|m| m["Role"] != "Leader" && m["State"] == "streaming")
        .count();
    Ok(leaders == 1 && streaming == members.len() - 1)
}

pub fn scenario(info: &LabInfo, names: &[&str], hook: &Receiver) -> Result<()> {
    let bin = built("kbz-backup")?;
    let inv = info.servers_tsv.display().to_string();
    let first = names[0];
    let backup_host = info
        .hosts
        .iter()
        .find(|h| h.roles.iter().any(|r| r == "backup"))
        .map(|h| h.name.clone())
        .context("the lab inventory has no backup host")?;

    step("kbz-backup: no backup host in the inventory is E041 (exit 64)");
    let text = fs::read_to_string(&info.servers_tsv)?;
    let nobk = info.dir.join("servers-no-backup.tsv");
    fs::write(&nobk, text.replace(",backup", ""))?;
    let r = kbz_backup(
        &bin,
        &nobk.display().to_string(),
        &[
            "--config",
            &info.config.display().to_string(),
            "--state-dir",
            &info.dir.join(".kbz").display().to_string(),
            "list",
            "--json",
        ],
    )?;
    ensure!(
        r.code == 64 && first_code(&r.json()?) == Code::E041.to_string(),
        "no backup host: exit {}\n{}{}",
        r.code,
        r.stdout,
        r.stderr
    );

    step("kbz-backup: an unreachable repository is E041 (exit 3)");
    let bk_ip = info
        .hosts
        .iter()
        .find(|h| h.name == backup_host)
        .map(|h| h.ip.to_string())
        .context("ip")?;
    let unreach = info.dir.join("servers-unreachable-backup.tsv");
    fs::write(
        &unreach,
        text.replace(
            &format!("{backup_host}\t{bk_ip}\t"),
            &format!("{backup_host}\t10.77.0.250\t"),
        ),
    )?;
    let r = kbz_backup(
        &bin,
        &unreach.display().to_string(),
        &[
            "--config",
            &info.config.display().to_string(),
            "--state-dir",
            &info.dir.join(".kbz").display().to_string(),
            "list",
            "--json",
        ],
    )?;
    ensure!(
        r.code == 3 && first_code(&r.json()?) == Code::E041.to_string(),
        "unreachable repository: exit {}\n{}{}",
        r.code,
        r.stdout,
        r.stderr
    );

    step("kbz-backup: canaries, then run --full");
    etcdctl(info, first, "put /e2e/backup-canary t1")?;
    let master = redis_master(names)?;
    for i in 1..=3 {
        ensure!(
            redis(&master, &format!("SET e2e:backup:{i} t1"))? == "OK",
            "SET on {master}"
        );
    }
    let t = Instant::now();
    let r = kbz_backup(&bin, &inv, &["run", "--full", "--json"])?;
    let run_secs = t.elapsed().as_secs_f64();
    ensure!(
        r.code == 0,
        "kbz-backup run --full: exit {}\n{}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let run = r.json()?;
    let backups = run["backups"].as_array().cloned().unwrap_or_default();
    for c in ["etcd", "redis"] {
        let b = backups
            .iter()
            .find(|b| b["component"] == c)
            .with_context(|| format!("no {c} backup in {run}"))?;
        println!(
            "backup {c}: {} bytes in {} ms from {} ({})",
            b["size_bytes"], b["duration_ms"], b["source_host"], b["id"]
        );
    }
    println!(
        "kbz-backup run --full: {run_secs:.1}s for {} components",
        backups.len()
    );
    ensure!(
        r.stderr.is_empty() || !r.stderr.contains("warning"),
        "{}",
        r.stderr
    );

    step("kbz-backup list and verify");
    let l = kbz_backup(&bin, &inv, &["list", "--json"])?;
    ensure!(l.code == 0, "list: {}{}", l.stdout, l.stderr);
    let before = l.json()?["backups"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    ensure!(before >= 2, "list shows {before} backups: {}", l.stdout);
    let v = kbz_backup(&bin, &inv, &["verify", "--json"])?;
    ensure!(v.code == 0, "verify: {}{}", v.stdout, v.stderr);

    step("kbz-backup restore etcd: refused without --force (E043, names what it stops); dry-run lists every step");
    etcdctl(info, first, "del /e2e/backup-canary")?;
    let r = kbz_backup(&bin, &inv, &["restore", "etcd", "--json"])?;
    let j = r.json()?;
    ensure!(
        r.code == 1 && first_code(&j) == Code::E043.to_string(),
        "restore without --force: exit {}\n{}",
        r.code,
        r.stdout
    );
    ensure!(
        j["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("etcd on {first}")),
        "E043 does not name what it stops: {}",
        r.stdout
    );
    let d = kbz_backup(&bin, &inv, &["restore", "etcd", "--dry-run"])?;
    ensure!(
        d.code == 0 && d.stdout.contains("stop etcd"),
        "dry-run: {}{}",
        d.stdout,
        d.stderr
    );
    println!("{}", d.stdout);

    step("kbz-backup restore etcd --at before the first backup: E045 before anything stops");
    let r = kbz_backup(
        &bin,
        &inv,
        &[
            "restore",
            "etcd",
            "--at",
            "2000-01-01T00:00:00Z",
            "--force",
            "--json",
        ],
    )?;
    ensure!(
        r.code == 1 && first_code(&r.json()?) == Code::E045.to_string(),
        "--at before the first: exit {}\n{}",
        r.code,
        r.stdout
    );
    ensure!(
        on(first, "systemctl is-active etcd")? == "active",
        "etcd stopped by a refused restore"
    );

    step("kbz-backup restore etcd --force: the canary is back, Patroni healthy");
    let t = Instant::now();
    let r = kbz_backup(&bin, &inv, &["restore", "etcd", "--force", "--json"])?;
    let etcd_restore = t.elapsed().as_secs_f64();
    ensure!(
        r.code == 0,
        "restore etcd: exit {}\n{}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    for h in names {
        ensure!(
            etcdctl(info, h, "get /e2e/backup-canary --print-value-only")? == "t1",
            "{h}: the etcd canary is not back"
        );
    }
    eventually(120, "Patroni healthy after the etcd restore", || {
        patroni_healthy(first)
    })?;
    println!(
        "etcd restored in {etcd_restore:.1}s: {}",
        r.json()?["detail"]
    );

    step("kbz-backup restore redis --force: the canary keys are back on every node");
    let master = redis_master(names)?;
    redis(&master, "DEL e2e:backup:1 e2e:backup:2 e2e:backup:3")?;
    let t = Instant::now();
    let r = kbz_backup(&bin, &inv, &["restore", "redis", "--force", "--json"])?;
    let redis_restore = t.elapsed().as_secs_f64();
    ensure!(
        r.code == 0,
        "restore redis: exit {}\n{}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    for h in names {
        eventually(60, "the Redis canaries on every node", || {
            Ok((1..=3).all(|i| {
                redis(h, &format!("GET e2e:backup:{i}"))
                    .map(|v| v == "t1")
                    .unwrap_or(false)
            }))
        })?;
    }
    println!(
        "redis restored in {redis_restore:.1}s: {}",
        r.json()?["detail"]
    );

    step("kbz-backup drill: scratch etcd and redis-server on the backup host match the manifests");
    let t = Instant::now();
    let r = kbz_backup(&bin, &inv, &["drill", "--json"])?;
    let drill_secs = t.elapsed().as_secs_f64();
    ensure!(
        r.code == 0,
        "drill: exit {}\n{}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    for d in r.json()?["drills"].as_array().cloned().unwrap_or_default() {
        println!(
            "drill {}: restore {} ms, total {} ms, {}",
            d["component"], d["restore_ms"], d["total_ms"], d["compared"]
        );
    }
    println!("kbz-backup drill: {drill_secs:.1}s");

    step("kbz-backup schedule install: the cron line, run exactly as cron would, makes a backup");
    let root = info.dir.join("cron-root");
    let _ = fs::remove_dir_all(&root);
    let r = kbz_backup(
        &bin,
        &inv,
        &["schedule", "install", "--root", &root.display().to_string()],
    )?;
    ensure!(r.code == 0, "schedule install: {}{}", r.stdout, r.stderr);
    let cron = fs::read_to_string(root.join(kbz_cli::backup::schedule::CRON_FILE))?;
    let lines = kbz_cli::backup::schedule::cron_commands(&cron);
    let diff = lines
        .iter()
        .find(|l| l.contains(" run --diff"))
        .context("no diff line")?;
    let out = Command::new("env")
        .args([
            "-i",
            "HOME=/root",
            "LOGNAME=root",
            "SHELL=/bin/sh",
            "PATH=/usr/bin:/bin",
            "/bin/sh",
            "-c",
            diff,
        ])
        .output()?;
    ensure!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "the cron line failed or was not silent (exit {:?}):\n{diff}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = kbz_backup(&bin, &inv, &["list", "--json"])?.json()?["backups"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    ensure!(
        after > before,
        "the cron line made no backup ({before} before, {after} after)"
    );
    let show = kbz_backup(
        &bin,
        &inv,
        &["schedule", "show", "--root", &root.display().to_string()],
    )?;
    ensure!(
        show.stdout.contains("run --full --prune"),
        "{}",
        show.stdout
    );
    kbz_backup(
        &bin,
        &inv,
        &["schedule", "remove", "--root", &root.display().to_string()],
    )?;

    step("kbz-backup verify: a flipped byte is E044 naming the artifact");
    let list = kbz_backup(&bin, &inv, &["list", "--json"])?.json()?;
    let victim = list["backups"]
        .as_array()
        .and_then(|a| a.iter().rev().find(|b| b["component"] == "redis"))
        .cloned()
        .context("a redis backup")?;
    let path = format!(
        "/var/backups/kbz/redis/{}/{}",
        victim["id"].as_str().unwrap_or(""),
        victim["stored"]["file"].as_str().unwrap_or("")
    );
    on(
        &backup_host,
        &format!("printf '\\377' | dd of={path} bs=1 seek=100 count=1 conv=notrunc 2>/dev/null"),
    )?;
    let v = kbz_backup(&bin, &inv, &["verify", "--json"])?;
    let j = v.json()?;
    ensure!(
        v.code == 1 && first_code(&j) == Code::E044.to_string() && v.stdout.contains(&path),
        "verify after a flipped byte: exit {}\n{}",
        v.code,
        v.stdout
    );
    on(
        &backup_host,
        &format!(
            "rm -rf /var/backups/kbz/redis/{}",
            victim["id"].as_str().unwrap_or("x")
        ),
    )?;

    step("the webhook received the backup and drill results");
    let got = hook.bodies();
    for want in [
        "Backup of etcd on kbzlab succeeded",
        "Backup of redis on kbzlab succeeded",
        "Restore drill of etcd on kbzlab passed",
        "Restore drill of redis on kbzlab passed",
    ] {
        ensure!(
            got.iter().any(|b| b.contains(want)),
            "the webhook did not get `{want}`: {got:?}"
        );
    }
    println!(
        "e2e backup figures: run --full {run_secs:.1}s, restore etcd {etcd_restore:.1}s, restore redis {redis_restore:.1}s, drill {drill_secs:.1}s"
    );
    Ok(())
}
