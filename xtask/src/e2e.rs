//! `cargo xtask e2e`: the real installer against real lab hosts. Brings a 3-host lab up,
//! refuses installs the preflight finds wrong (a foreign listener, a minimum above the hosts),
//! installs over SSH with verified host keys, asserts on the hosts over SSH, re-runs
//! (0 changed), runs the embedding example (`examples/embed`: its own component through the
//! library API), runs every failover scenario once through kbz-failover with its budgets,
//! checks kbz-health, runs MariaDB Galera through power cuts of every node, publishes to
//! RabbitMQ with confirms through its VIP across a power cut of the queue leader, backs up,
//! restores and drills etcd and Redis with kbz-backup (its cron line run as cron would), dry-runs (0 operations), proves rollback after a failure on one host,
//! uninstalls, reinstalls over the kept data (then 0 changed), rebuilds the lab from scratch
//! and installs it again with `--start-from-module 1` and `[security] tls = false` (then 0
//! changed), turns TLS on over that running plaintext cluster by docs/security.md's
//! procedure (same PostgreSQL cluster, then 0 changed), and tears the lab down. Prints
//! timings for `bench lab`.

use anyhow::{bail, ensure, Context as _, Result};
use fs_err as fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use crate::lab::{self, LabInfo};

mod backup;
mod embed;
mod failover;
mod health;
mod mariadb;
mod menu;
mod preflight;
mod rabbitmq;
mod reinstall;
mod tls_migration;

/// `e2e` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the lab up afterwards (for debugging); `cargo xtask lab down` removes it.
    #[arg(long)]
    keep: bool,
    /// Leave out the failover suite (about 12 minutes) while iterating on the other steps;
    /// says so at the end, and `.ci/run` never passes it.
    #[arg(long)]
    skip_failovers: bool,
    /// Leave out kbz-backup's lab scenario (issue 11: backups, refused and forced
    /// restores of etcd under Patroni and of Redis, drills, the cron line); `.ci/run` runs it.
    #[arg(long)]
    skip_backup: bool,
    /// Leave out the drive of `kbz-install menu` against the lab in tmux (issue 15:
    /// uninstall and install Redis, back up now, drill); `.ci/run` runs it.
    #[arg(long)]
    skip_menu: bool,
}

/// Figures measured during the run, printed at the end (and by `bench lab`).
#[derive(Debug, Default)]
pub struct Figures {
    /// Lab up, seconds.
    pub lab_up: f64,
    /// First install of every module, seconds.
    pub first_install: f64,
    /// Converged re-run, seconds.
    pub rerun: f64,
    /// SSH round trips of the converged re-run, per host.
    pub rerun_round_trips_per_host: f64,
    /// One run of every failover scenario (kbz-failover), in [`failover::SUITE`] order.
    pub failovers: Vec<kbz_faults::RunReport>,
    /// Seconds of one kbz-health run on the healthy lab.
    pub health_run: f64,
    /// Checks in that run.
    pub health_checks: usize,
    /// Seconds from a powered-off replica's boot until kbz-health says healthy again.
    pub health_rejoin: f64,
    /// What the lab's apt proxy fetched and served during the first install.
    pub first_install_apt: Option<lab::ProxyBytes>,
    /// The same for the install of the rebuilt lab (new hosts, the proxy's cache kept).
    pub rebuilt_install_apt: Option<lab::ProxyBytes>,
}

/// `fetched X MiB from the mirror, served Y MiB to the hosts` (or why there is no figure).
pub fn apt_line(b: Option<lab::ProxyBytes>) -> String {
    match b {
        Some(b) => format!(
            "fetched {:.1} MiB from the mirror, served {:.1} MiB to the hosts",
            b.upstream as f64 / 1048576.0,
            b.served as f64 / 1048576.0
        ),
        None => "no figure (the apt proxy on the bridge is not the lab's own)".into(),
    }
}

/// Runs `f` and returns what the lab's apt proxy moved meanwhile.
fn apt_during<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Option<lab::ProxyBytes>)> {
    let before = lab::proxy_bytes()?;
    let out = f()?;
    let after = lab::proxy_bytes()?;
    Ok((out, after.zip(before).map(|(a, b)| a.since(b))))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (skip, backup, menu) = (args.skip_failovers, !args.skip_backup, !args.skip_menu);
    let figures = with_lab(args.keep, |info, fig| {
        scenarios(info, fig, skip, backup, menu)
    })?;
    if skip {
        println!("e2e: the failover suite was left out (--skip-failovers): this is not a full e2e");
    }
    println!(
        "e2e: all scenarios passed. lab up {:.1}s, first install {:.1}s, converged re-run {:.1}s, {:.1} SSH round trips per host on re-run",
        figures.lab_up, figures.first_install, figures.rerun, figures.rerun_round_trips_per_host
    );
    println!(
        "e2e: failover scenarios, one run each, inside their budgets:\n{}",
        failover::table(&figures.failovers)
    );
    println!(
        "e2e: kbz-health: {} checks in {:.1}s (one round trip per host); healthy again {:.1}s after a powered-off replica booted",
        figures.health_checks, figures.health_run, figures.health_rejoin
    );
    println!(
        "e2e: apt proxy: the first install {}; the rebuilt lab's install {}",
        apt_line(figures.first_install_apt),
        apt_line(figures.rebuilt_install_apt)
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` on a fresh 3-host lab and always takes the lab down afterwards (unless `keep`).
pub fn with_lab(
    keep: bool,
    f: impl FnOnce(&LabInfo, &mut Figures) -> Result<()>,
) -> Result<Figures> {
    let _session = lab::session_lock()?;
    if lab::info()?.is_some() {
        bail!("a lab is already up: take it down first with `cargo xtask lab down`");
    }
    // A state dir left by an earlier e2e that was killed (its journal, locks and secrets)
    // belongs to hosts that no longer exist: a fresh lab starts with a fresh one.
    let stale = lab::lab_dir().join(".kbz");
    if stale.exists() {
        let aside = lab::lab_dir().join(".kbz.previous");
        if aside.exists() {
            fs::remove_dir_all(&aside)?;
        }
        fs::rename(&stale, &aside)?;
        eprintln!(
            "e2e: an earlier run's state dir was moved aside to {}",
            aside.display()
        );
    }
    let mut figures = Figures::default();
    let t = Instant::now();
    let info = lab::up(3)?;
    figures.lab_up = t.elapsed().as_secs_f64();
    let result = f(&info, &mut figures);
    if keep {
        eprintln!("e2e: lab kept up (--keep); remove it with `cargo xtask lab down`");
        return result.map(|_| figures);
    }
    let down = lab::down();
    result?;
    down?;
    Ok(figures)
}

fn step(name: &str) {
    println!("\n== e2e: {name}");
}

/// The kbz-install binary of this workspace, built once: the path cargo reports for the
/// artifact it built (so `CARGO_TARGET_DIR` and build config are respected).
pub fn kbz_install() -> Result<PathBuf> {
    built("kbz-install")
}

/// Builds a binary of this workspace (package and binary named alike) and returns the
/// executable cargo reports for it (CARGO_TARGET_DIR and config respected).
pub fn built(package: &str) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            package,
            "--bin",
            package,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    ensure!(out.status.success(), "cargo build -p {package} failed");
    built_executable(&String::from_utf8_lossy(&out.stdout), package)
}

/// The `executable` of the `compiler-artifact` message for binary `name` in cargo's JSON
/// messages.
fn built_executable(messages: &str, name: &str) -> Result<PathBuf> {
    for line in messages.lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if m["reason"] == "compiler-artifact" && m["target"]["name"] == name {
            if let Some(exe) = m["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo build reported no executable for {name}")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn install(bin: &Path, args: &[&str]) -> Result<Run> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .context("cannot run kbz-install")?;
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    Ok(r)
}

fn on(host: &str, script: &str) -> Result<String> {
    let out = lab::output(host, script)?;
    ensure!(
        out.status.success(),
        "on {host}: `{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn json(r: &Run) -> Result<serde_json::Value> {
    serde_json::from_str(&r.stdout).with_context(|| {
        format!(
            "kbz-install printed no JSON report:\n{}\n{}",
            r.stdout, r.stderr
        )
    })
}

/// A number at `path` in a JSON report; a missing or non-numeric field is an error, never 0.
fn field_u64(report: &serde_json::Value, path: &[&str]) -> Result<u64> {
    let mut v = report;
    for key in path {
        v = v
            .get(key)
            .with_context(|| format!("the JSON report has no `{}`", path.join(".")))?;
    }
    v.as_u64().with_context(|| {
        format!(
            "`{}` in the JSON report is not a count: {v}",
            path.join(".")
        )
    })
}

/// `kbz-install --yes --json` on the lab must succeed with 0 operations and 0 cluster
/// changes; `after` names the situation in the error ("after the reinstall").
fn rerun_changes_nothing(bin: &Path, inv: &str, after: &str) -> Result<serde_json::Value> {
    let r = install(bin, &["--inventory", inv, "--yes", "--json"])?;
    ensure!(
        r.code == 0,
        "the re-run {after} failed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    let (ops, cluster) = (changed(&report)?, cluster_changes(&report)?);
    ensure!(
        ops == 0 && cluster == 0,
        "the re-run {after} changed {ops} operations and made {cluster} cluster changes:\n{}",
        r.stdout
    );
    Ok(report)
}

/// Resource operations a run applied (`summary.changed`).
fn changed(report: &serde_json::Value) -> Result<u64> {
    field_u64(report, &["summary", "changed"])
}

/// Actions the cluster steps took (`summary.cluster_changes`).
fn cluster_changes(report: &serde_json::Value) -> Result<u64> {
    field_u64(report, &["summary", "cluster_changes"])
}

/// Everything module 1 promises, checked on one host.
fn assert_base(host: &str, info: &LabInfo) -> Result<()> {
    ensure!(on(host, "hostname")? == host, "{host}: hostname not set");
    let hosts = on(host, "cat /etc/hosts")?;
    for h in &info.hosts {
        ensure!(
            hosts.contains(&format!("{}\t{}", h.ip, h.name)),
            "{host}: /etc/hosts lacks {}",
            h.name
        );
    }
    for (key, want) in kbz_base::SYSCTLS {
        let got = on(host, &format!("sysctl -n {key}"))?;
        ensure!(
            got.split_whitespace().collect::<Vec<_>>().join(" ") == *want,
            "{host}: {key} = {got}, want {want}"
        );
    }
    // Loaded or built in: overlay is a filesystem, br_netfilter brings net.bridge.*.
    on(
        host,
        "[ -d /sys/module/overlay ] || grep -qw overlay /proc/filesystems",
    )?;
    on(host, "[ -d /proc/sys/net/bridge ]")?;
    ensure!(
        on(host, "tail -n +2 /proc/swaps")?.is_empty(),
        "{host}: swap is on"
    );
    ensure!(
        on(host, &format!("cat {}", kbz_base::APT_PROXY_FILE))?.contains(&info.apt_proxy),
        "{host}: apt proxy not configured"
    );
    on(
        host,
        "dpkg-query -W -f '${Status}' chrony | grep -q 'install ok installed'",
    )?;
    Ok(())
}

/// Runs a script with `input` on its standard input (secrets go this way, never in argv).
fn on_stdin(host: &str, script: &str, input: &str) -> Result<String> {
    use std::io::Write;
    let mut cmd = lab::ssh_command(host)?;
    cmd.arg("--")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run ssh")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "on {host}: script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A secret the installer generated, from the lab's state directory.
fn secret(info: &LabInfo, name: &str) -> Result<String> {
    let path = info.dir.join(".kbz/secrets.toml");
    let table: toml::Table = fs::read_to_string(&path)?.parse()?;
    table
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .with_context(|| format!("no secret {name} in {}", path.display()))
}

/// Polls `check` every 500 ms for up to `secs` seconds.
fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) | Err(_) if start.elapsed().as_secs() < secs => {
                std::thread::sleep(std::time::Duration::from_millis(500))
            }
            Ok(false) => bail!("{what}: not true after {secs}s"),
            Err(e) => return Err(e.context(format!("{what}: still failing after {secs}s"))),
        }
    }
}

/// Modules 2-6 on real hosts: Patroni, writes through the VIPs, Sentinel agreement, etcd.
fn data_tier(info: &LabInfo, names: &[&str]) -> Result<()> {
    let cfg: toml::Table = fs::read_to_string(&info.config)?.parse()?;
    let vip = |name: &str| -> Result<String> {
        cfg.get("vips")
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("lab kbz.toml has no {name} VIP"))
    };
    let first = names[0];

    step("etcd reports healthy");
    // Over TLS with the member certificate when `[security] tls` put one there.
    let ip = info.hosts[0].ip.into();
    let health = on(
        first,
        &format!(
            "{{ {}; }} 2>&1",
            kbz_etcd::local_ctl(ip, "endpoint health --cluster")
        ),
    )?;
    ensure!(
        health.matches("is healthy").count() == names.len(),
        "etcd not healthy:\n{health}"
    );
    println!("{health}");

    step("patronictl list: 1 leader, 2 replicas; the leader streams to both");
    let list = on(first, "patronictl -c /etc/patroni/config.yml list -f json")?;
    let members: Vec<serde_json::Value> = serde_json::from_str(&list)?;
    let leaders: Vec<&serde_json::Value> =
        members.iter().filter(|m| m["Role"] == "Leader").collect();
    ensure!(
        leaders.len() == 1 && members.len() == names.len(),
        "patronictl list: {list}"
    );
    let leader = leaders[0]["Member"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let streaming = on(&leader, "runuser -u postgres -- psql -XAtqc \"select count(*) from pg_stat_replication where state = 'streaming'\"")?;
    ensure!(
        streaming == (names.len() - 1).to_string(),
        "{leader} streams to {streaming} replicas"
    );
    println!("leader {leader}, {streaming} streaming replicas");

    step("a row written through the PostgreSQL VIP as the application role is read back on every replica; the superuser is refused over TCP");
    let pg = secret(info, kbz_postgres::APP_PASSWORD)?;
    let superuser = secret(info, kbz_postgres::SUPERUSER_PASSWORD)?;
    let cfg: toml::Table = std::fs::read_to_string(&info.config)?.parse()?;
    let (app_user, app_db) = crate::failover::app_role(&cfg);
    let pg_vip = vip("postgres")?;
    on_stdin(
        first,
        &format!(
            "PGPASSWORD=$(cat) psql -XAtq -h {pg_vip} -U {app_user} -d {app_db} -c \"create table if not exists kbz_e2e (id int primary key, v text); insert into kbz_e2e values (1, 'through-the-vip') on conflict (id) do update set v = excluded.v\""
        ),
        &pg,
    )?;
    for h in &info.hosts {
        eventually(15, &format!("row on {}", h.name), || {
            let v = on_stdin(
                &h.name,
                &format!("PGPASSWORD=$(cat) psql -XAtq -h {} -U {app_user} -d {app_db} -c 'select v from kbz_e2e where id = 1'", h.ip),
                &pg,
            )?;
            Ok(v == "through-the-vip")
        })?;
    }
    // The superuser with its right password: refused by pg_hba through the VIP and on a
    // member's own address, loopback included.
    for host in [pg_vip.as_str(), "127.0.0.1", &info.hosts[0].ip.to_string()] {
        let out = on_stdin(
            first,
            &format!("PGPASSWORD=$(cat) psql -XAtq -h {host} -U postgres -d postgres -c 'select 1' 2>&1 || true"),
            &superuser,
        )?;
        ensure!(
            out.contains("pg_hba.conf"),
            "the superuser over TCP to {host} was not refused by pg_hba: {out}"
        );
    }
    println!("row read back on every member; the superuser refused over TCP");

    step("Redis through its VIP takes writes; every Sentinel names the same master");
    let redis = secret(info, "redis_password")?;
    let redis_vip = vip("redis")?;
    let set = on_stdin(first, &format!("REDISCLI_AUTH=$(cat) redis-cli --no-auth-warning -h {redis_vip} -p 6379 set kbz-e2e hello"), &redis)?;
    ensure!(set == "OK", "SET through the VIP answered {set}");
    let role = on_stdin(
        first,
        &format!("REDISCLI_AUTH=$(cat) redis-cli --no-auth-warning -h {redis_vip} -p 6379 role"),
        &redis,
    )?;
    ensure!(
        role.starts_with("master"),
        "the Redis VIP does not lead to the master: {role}"
    );
    let sentinel = secret(info, "redis_sentinel_password")?;
    let mut masters = Vec::new();
    for h in names {
        let m = on_stdin(h, "REDISCLI_AUTH=$(cat) redis-cli --no-auth-warning -p 26379 sentinel get-master-addr-by-name kbz", &sentinel)?;
        let ck = on_stdin(
            h,
            "REDISCLI_AUTH=$(cat) redis-cli --no-auth-warning -p 26379 sentinel ckquorum kbz",
            &sentinel,
        )?;
        ensure!(ck.starts_with("OK"), "{h}: CKQUORUM: {ck}");
        masters.push(m.lines().next().unwrap_or_default().to_string());
    }
    ensure!(
        masters.windows(2).all(|w| w[0] == w[1]),
        "Sentinels disagree: {masters:?}"
    );
    println!("every Sentinel names {} and passes CKQUORUM", masters[0]);
    Ok(())
}

/// A webhook receiver on 127.0.0.1 that records request bodies.
struct Receiver {
    port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Result<Receiver> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow::anyhow!("webhook receiver: {e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .context("receiver address")?;
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = bodies.clone();
        // The thread ends with the process; the receiver only ever listens on loopback.
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
                if let Ok(mut b) = sink.lock() {
                    b.push(body);
                }
                let _ = req.respond(tiny_http::Response::empty(200));
            }
        });
        Ok(Receiver { port, bodies })
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// Who leads what right now.
struct Leaders {
    patroni: String,
    redis_ip: String,
}

fn leaders(host: &str, sentinel: &str) -> Result<Leaders> {
    let list = on(host, "patronictl -c /etc/patroni/config.yml list -f json")?;
    let members: Vec<serde_json::Value> = serde_json::from_str(&list)?;
    let patroni = members
        .iter()
        .find(|m| m["Role"] == "Leader" && m["State"] == "running")
        .and_then(|m| m["Member"].as_str())
        .unwrap_or_default()
        .to_string();
    let m = on_stdin(
        host,
        "REDISCLI_AUTH=$(cat) redis-cli --no-auth-warning -p 26379 sentinel get-master-addr-by-name kbz",
        sentinel,
    )?;
    let redis_ip = m.lines().next().unwrap_or_default().to_string();
    Ok(Leaders { patroni, redis_ip })
}

/// Every failover scenario once ([`failover::suite`]); then a re-run must accept the new
/// leaders (0 changed, 0 cluster changes, leaders kept).
fn failover_scenario(bin: &Path, info: &LabInfo, names: &[&str], fig: &mut Figures) -> Result<()> {
    let sentinel = secret(info, "redis_sentinel_password")?;
    failover::suite(info, fig)?;

    step("a re-run after the failovers accepts the new leaders");
    let before = leaders(names[0], &sentinel)?;
    let inv = info.servers_tsv.display().to_string();
    rerun_changes_nothing(bin, &inv, "after the failovers")?;
    let after = leaders(names[0], &sentinel)?;
    ensure!(
        (before.patroni.as_str(), before.redis_ip.as_str())
            == (after.patroni.as_str(), after.redis_ip.as_str()),
        "the re-run moved the leaders: Patroni {} -> {}, Redis {} -> {}",
        before.patroni,
        after.patroni,
        before.redis_ip,
        after.redis_ip
    );
    println!(
        "re-run after failover: 0 changed, 0 cluster changes, leaders kept (Patroni {}, Redis {})",
        after.patroni, after.redis_ip
    );
    Ok(())
}

/// A fingerprint of everything module 1 touches on a host: file hashes and modes, installed
/// packages, service states.
fn fingerprint(host: &str) -> Result<String> {
    on(
        host,
        &format!(
            "for f in /etc/hosts /etc/hostname /etc/fstab {} {} {} {}; do if [ -e \"$f\" ]; then echo \"$f $(stat -c '%F %a %U:%G' \"$f\") $(sha256sum < \"$f\" 2>/dev/null | cut -d' ' -f1)\"; else echo \"$f absent\"; fi; done; \
             dpkg-query -W -f '${{Package}} ${{Status}}\\n' | sort | sha256sum; \
             for s in chrony ssh; do echo \"$s $(systemctl is-enabled $s 2>&1) $(systemctl is-active $s 2>&1)\"; done",
            kbz_base::SYSCTL_FILE,
            kbz_base::MODULES_FILE,
            kbz_base::APT_PROXY_FILE,
            kbz_base::CHRONY_FILE
        ),
    )
}

/// The first install and the converged re-run (0 changed), timed: shared with `bench lab`.
pub fn install_and_rerun(bin: &Path, info: &LabInfo, fig: &mut Figures) -> Result<()> {
    let inv = info.servers_tsv.display().to_string();
    step("first install over SSH with verified host keys");
    let t = Instant::now();
    let (r, apt) = apt_during(|| install(bin, &["--inventory", &inv, "--yes"]))?;
    fig.first_install = t.elapsed().as_secs_f64();
    fig.first_install_apt = apt;
    ensure!(
        r.code == 0,
        "first install failed ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    println!("{}", r.stdout.trim_end());
    println!("apt proxy during the first install: {}", apt_line(apt));

    step("second run changes nothing");
    let t = Instant::now();
    let report = rerun_changes_nothing(bin, &inv, "after the first install")?;
    fig.rerun = t.elapsed().as_secs_f64();
    let trips = field_u64(&report, &["round_trips"])?;
    fig.rerun_round_trips_per_host = trips as f64 / info.hosts.len() as f64;
    println!(
        "0 changed, 0 cluster changes in {:.1}s, {trips} round trips",
        fig.rerun
    );
    preflight::after_install(&report)?;
    Ok(())
}

fn scenarios(
    info: &LabInfo,
    fig: &mut Figures,
    skip_failovers: bool,
    with_backup: bool,
    with_menu: bool,
) -> Result<()> {
    let bin = kbz_install()?;
    let inv = info.servers_tsv.display().to_string();
    let names: Vec<&str> = info.hosts.iter().map(|h| h.name.as_str()).collect();
    // Operators hear about installs: a JSON webhook target on the controller's loopback.
    let hook = Receiver::start()?;
    let mut cfg = fs::read_to_string(&info.config)?;
    cfg.push_str(&format!("\n[[notify]]\nname = \"e2e-hook\"\nurl = \"json://127.0.0.1:{}/hook\"\nmin_level = \"info\"\n", hook.port));
    fs::write(&info.config, cfg)?;
    preflight::scenario(&bin, info, &names)?;
    install_and_rerun(&bin, info, fig)?;
    let got = hook.bodies();
    ensure!(
        got.iter()
            .any(|b| b.contains("kbz install started on kbzlab"))
            && got
                .iter()
                .any(|b| b.contains("kbz install succeeded on kbzlab")),
        "the webhook did not get install start and success: {got:?}"
    );
    println!(
        "webhook received {} notifications (start and success of each run)",
        got.len()
    );
    for h in &names {
        assert_base(h, info)?;
    }
    // Issue 17: a tool embedding kbz's crates converges its own component on the same hosts.
    embed::scenario(info)?;
    data_tier(info, &names)?;
    if skip_failovers {
        step("failover suite left out (--skip-failovers)");
    } else {
        failover_scenario(&bin, info, &names, fig)?;
    }
    health::scenario(info, &names, fig)?;
    // Issue 12: Galera on the lab, its power cuts and kbz's full-cluster recovery.
    mariadb::scenario(info)?;
    // Issue 12: RabbitMQ through its VIP, a power cut of the queue leader, 0 confirmed lost.
    rabbitmq::scenario(info)?;
    // Issue 11: backups, restores, drills and the cron line of kbz-backup (see `with_backup`).
    if with_backup {
        backup::scenario(info, &names, &hook)?;
    } else {
        step("kbz-backup's scenario left out (--skip-backup)");
    }
    // Issue 15: the menu against real hosts.
    if with_menu {
        menu::scenario(info, &names)?;
    } else {
        step("the menu against the lab left out (--skip-menu)");
    }

    step("dry-run against the converged lab plans 0 operations");
    let r = install(&bin, &["--inventory", &inv, "--dry-run"])?;
    ensure!(r.code == 0, "dry-run failed:\n{}\n{}", r.stdout, r.stderr);
    ensure!(
        r.stdout.contains("0 operations would change on 0 hosts"),
        "dry-run planned work:\n{}",
        r.stdout
    );

    host_lock_scenario(&bin, info, &names)?;

    step("a failure on one host rolls every host back");
    rollback_scenario(&bin, info, &names, Some(&hook))?;

    reinstall::before_uninstall(info)?;
    step("uninstall");
    let r = install(&bin, &["uninstall", "--inventory", &inv, "--yes"])?;
    ensure!(r.code == 0, "uninstall failed:\n{}\n{}", r.stdout, r.stderr);
    for h in &names {
        for unit in [
            "keepalived",
            "haproxy",
            "etcd",
            "patroni",
            "redis-server",
            "redis-sentinel",
            "rabbitmq-server",
        ] {
            let state = on(h, &format!("systemctl is-active {unit} || true"))?;
            ensure!(
                state != "active",
                "{h}: {unit} still active after uninstall"
            );
        }
        for pkg in [
            "keepalived",
            "haproxy",
            "etcd-server",
            "patroni",
            "redis-server",
            "redis-sentinel",
            "rabbitmq-server",
        ] {
            let st = on(
                h,
                &format!("dpkg-query -W -f '${{Status}}' {pkg} 2>/dev/null || true"),
            )?;
            ensure!(
                st != "install ok installed",
                "{h}: {pkg} still installed after uninstall"
            );
        }
        for f in [
            kbz_base::SYSCTL_FILE,
            kbz_base::MODULES_FILE,
            kbz_base::APT_PROXY_FILE,
        ] {
            on(h, &format!("test ! -e {f}"))
                .with_context(|| format!("{h}: {f} left after uninstall"))?;
        }
    }
    reinstall::after_uninstall(&bin, info)?;
    let rebuilt = reinstall::after_rebuild(&bin, info, fig)?;
    // Issue 9: docs/security.md's procedure turns TLS on over the plaintext rebuilt lab.
    tls_migration::scenario(&bin, &rebuilt)?;
    Ok(())
}

/// A host lock planted on one host (another controller's run) refuses the install with E067
/// naming that host, nothing changes and no other host keeps a lock; once it is removed the
/// install runs again.
fn host_lock_scenario(bin: &Path, info: &LabInfo, names: &[&str]) -> Result<()> {
    step("a host locked by another run refuses the install (E067, host named)");
    let inv = info.servers_tsv.display().to_string();
    let lock = kbz_core::shell::HOST_LOCK_PATH;
    let locked = names[1];
    let owner = r#"{"controller":"e2e-other","machine":"e2e","uid":0,"pid":1,"started":"2026-01-01T00:00:00Z","command":"kbz-install install"}"#;
    on(
        locked,
        &format!("mkdir -p /run/kbz && printf '%s\\n' '{owner}' > {lock}"),
    )?;
    let r = install(bin, &["--inventory", &inv, "--yes", "--json"]);
    on(locked, &format!("rm -f {lock}"))?;
    let r = r?;
    ensure!(
        r.code != 0
            && r.stdout.contains(&kbz_errors::Code::E067.to_string())
            && r.stdout
                .contains(&format!("{locked}: another kbz run holds {lock}")),
        "the install ran over a host lock ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    for h in names {
        on(h, &format!("test ! -e {lock}"))
            .with_context(|| format!("{h}: a host lock was left"))?;
    }
    let r = install(bin, &["--inventory", &inv, "--yes", "--json"])?;
    ensure!(
        r.code == 0,
        "the install after the lock was removed failed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    ensure!(
        changed(&report)? == 0,
        "the refused run changed something:\n{}",
        r.stdout
    );
    println!("{locked}'s lock refused the run with E067; after its removal the run converged with 0 changes");
    Ok(())
}

/// `10.77.0.1` from `http://10.77.0.1:3142`: the controller, an NTP server no host can use,
/// which is fine for a configuration change.
fn proxy_host(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.split([':', '/']).next().unwrap_or(rest).to_string()
}

/// Adds a package and NTP servers in a second config; on host 2 the chrony sources path is
/// made a directory so writing the file fails midway. Every host must end as it began.
fn rollback_scenario(
    bin: &Path,
    info: &LabInfo,
    names: &[&str],
    hook: Option<&Receiver>,
) -> Result<()> {
    let inv = info.servers_tsv.display().to_string();
    let cfg = fs::read_to_string(&info.config)?;
    ensure!(
        cfg.contains("[cluster]\n"),
        "lab kbz.toml has no [cluster] table"
    );
    let changed_cfg = cfg.replacen(
        "[cluster]\n",
        &format!(
            "[cluster]\nextra_packages = [\"tree\"]\nntp_servers = [\"{}\"]\n",
            proxy_host(&info.apt_proxy)
        ),
        1,
    );
    let cfg_path = info.dir.join("kbz-rollback.toml");
    fs::write(&cfg_path, changed_cfg)?;
    let victim = names[1];
    on(victim, &format!("mkdir -p {}", kbz_base::CHRONY_FILE))?;
    let before: Vec<String> = names
        .iter()
        .map(|h| fingerprint(h))
        .collect::<Result<_>>()?;

    let r = install(
        bin,
        &[
            "--inventory",
            &inv,
            "--config",
            &cfg_path.display().to_string(),
            "--yes",
        ],
    )?;
    ensure!(
        r.code == 1,
        "the run should have failed and rolled back (exit 1), got {}:\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    ensure!(
        r.stderr.contains(&kbz_errors::Code::E022.to_string()),
        "the failure should be E022 (file write):\n{}",
        r.stderr
    );
    if let Some(hook) = hook {
        ensure!(
            hook.bodies()
                .iter()
                .any(|b| b.contains("kbz install failed on kbzlab: E022")),
            "the webhook did not get the failure with its E-code"
        );
    }
    ensure!(
        r.stderr.contains("rolled back"),
        "no rollback reported:\n{}",
        r.stderr
    );
    let after: Vec<String> = names
        .iter()
        .map(|h| fingerprint(h))
        .collect::<Result<_>>()?;
    for ((h, b), a) in names.iter().zip(&before).zip(&after) {
        ensure!(
            b == a,
            "{h} differs after rollback:\nbefore:\n{b}\nafter:\n{a}"
        );
    }
    for h in names {
        ensure!(
            on(h, "dpkg-query -W -f '${Status}' tree 2>/dev/null || true")?
                != "install ok installed",
            "{h}: tree still installed"
        );
    }
    on(victim, &format!("rmdir {}", kbz_base::CHRONY_FILE))?;
    println!("failure on {victim} (E022), every host identical to before the run");
    Ok(())
}

#[cfg(test)]
mod strict_json_tests {
    use super::*;

    #[test]
    fn a_missing_count_is_an_error_not_zero() {
        let report = serde_json::json!({"summary": {"changed": 0}, "round_trips": 7});
        assert_eq!(changed(&report).expect("present"), 0);
        assert_eq!(field_u64(&report, &["round_trips"]).expect("present"), 7);
        let e = cluster_changes(&report).expect_err("missing");
        assert!(e.to_string().contains("summary.cluster_changes"), "{e}");
        let e =
            changed(&serde_json::json!({"summary": {"changed": "x"}})).expect_err("not a count");
        assert!(e.to_string().contains("not a count"), "{e}");
    }

    #[test]
    fn the_binary_is_the_one_cargo_reports() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"kbz-core"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"kbz-install"},"executable":"/tmp/t/debug/kbz-install"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            built_executable(messages, "kbz-install").expect("found"),
            PathBuf::from("/tmp/t/debug/kbz-install")
        );
        assert!(built_executable(messages, "kbz-health").is_err());
    }
}
