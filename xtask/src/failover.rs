//! `cargo xtask failover SCENARIO --runs N`: runs any kbz-faults scenario (PostgreSQL, Redis,
//! VIP) against the running lab (modules 1-6 installed) N times, prints one line per run, a summary table and, with
//! `--json FILE`, every run's report. Also builds the lab's [`kbz_faults::Target`] for e2e.

use anyhow::{bail, Context as _, Result};
use fs_err as fs;
use kbz_core::{Connector, Host, Role, Secret};
use kbz_faults::{
    HostCommands, Member, PgTarget, RedisTarget, RunReport, Scenario, Summary, Target, Timing,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::lab::{self, LabInfo};

/// `failover` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario (`kbz-failover list` shows them all): postgres-leader-partition,
    /// postgres-leader-crash, postgres-leader-isolation, postgres-leader-kill,
    /// postgres-replica-partition, etcd-leader-partition, postgres-switchover,
    /// etcd-member-crash, redis-master-crash, redis-master-partition, vip-holder-crash,
    /// haproxy-down.
    scenario: String,
    /// How many runs.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Seconds the fault lasts.
    #[arg(long, default_value_t = 35)]
    fault_secs: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Append every run's report (JSON lines) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `[postgres] app_user` and `app_database` of a kbz.toml, or their defaults.
pub fn app_role(cfg: &toml::Table) -> (String, String) {
    let d = kbz_core::config::PostgresConfig::default();
    let get = |key: &str, default: String| {
        cfg.get("postgres")
            .and_then(|p| p.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or(default)
    };
    (
        get("app_user", d.app_user),
        get("app_database", d.app_database),
    )
}

/// The lab as a kbz-faults target: every host over SSH with the lab's key and known_hosts,
/// writes through the PostgreSQL VIP as the application role, power cuts by `cargo xtask lab kill|start`.
pub fn target(rt: &tokio::runtime::Runtime, info: &LabInfo, writers: usize) -> Result<Target> {
    let cfg: toml::Table = fs::read_to_string(&info.config)?.parse()?;
    let vip: std::net::IpAddr = cfg
        .get("vips")
        .and_then(|v| v.get("postgres"))
        .and_then(|v| v.as_str())
        .context("lab kbz.toml has no postgres VIP")?
        .parse()?;
    let secrets: toml::Table = fs::read_to_string(info.dir.join(".kbz/secrets.toml"))?.parse()?;
    // The application role (the superuser is refused over TCP).
    let password = secrets
        .get(kbz_postgres::APP_PASSWORD)
        .and_then(|v| v.as_str())
        .context("no PostgreSQL application password in the lab's secrets: install first")?;
    let (app_user, app_database) = app_role(&cfg);
    let redis_password = secrets
        .get(kbz_redis::SECRET_REDIS)
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let sentinel_password = secrets
        .get(kbz_redis::SECRET_SENTINEL)
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    // With `[security] tls` the writers verify PostgreSQL against the lab's CA.
    let tls = cfg
        .get("security")
        .and_then(|s| s.get("tls"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let tls_ca = if tls {
        Some(
            fs::read_to_string(info.dir.join(".kbz/tls/ca.crt"))
                .context("[security] tls is on but the lab has no CA: install first")?,
        )
    } else {
        None
    };
    let redis_vip: Option<std::net::IpAddr> = cfg
        .get("vips")
        .and_then(|v| v.get("redis"))
        .and_then(|v| v.as_str())
        .map(|v| v.parse())
        .transpose()?;
    let opts = kbz_exec::ssh::SshOptions::new(&info.known_hosts)
        .key(&info.key)
        .connect_timeout(Duration::from_secs(3));
    let connector = kbz_exec::ssh::SshConnector::new(opts);
    // Every lab host once, with its roles; each role's members share the session.
    let all = info
        .hosts
        .iter()
        .map(|h| {
            let roles: Vec<Role> = h.roles.iter().filter_map(|r| Role::parse(r)).collect();
            let host = Host::new(&h.name, h.ip.into(), &roles);
            let exec = rt
                .block_on(connector.connect(&host))
                .with_context(|| format!("SSH to {}", h.name))?;
            Ok(Member { host, exec })
        })
        .collect::<Result<Vec<_>>>()?;
    let with = |role: Role| -> Vec<Member> {
        all.iter()
            .filter(|m| m.host.roles.contains(&role))
            .cloned()
            .collect()
    };
    let members = with(Role::Postgres);
    if members.len() < 3 {
        bail!("the lab has {} postgres hosts; 3 are needed", members.len());
    }
    let redis = redis_vip.map(|ip| RedisTarget {
        members: with(Role::Redis),
        vip: kbz_redis::client::Endpoint {
            ip,
            port: kbz_haproxy::REDIS_PORT,
            password: Secret::new(redis_password),
            timeout: Duration::from_secs(2),
            routes: Default::default(),
        },
        redis_port: kbz_redis::Layout::debian().redis_port,
        sentinel_port: kbz_redis::Layout::debian().sentinel_port,
        sentinel_password: Secret::new(sentinel_password),
    });
    let lbs = with(Role::Lb);
    let me = std::env::current_exe().context("xtask's own path")?;
    let me = kbz_core::shell::quote(&me.display().to_string());
    Ok(Target {
        members,
        pg: Some(PgTarget {
            addr: vip,
            port: kbz_postgres::PG_PORT,
            user: app_user,
            password: Secret::new(password),
            dbname: app_database,
            timeout: Duration::from_secs(2),
            tls_ca,
            routes: Default::default(),
        }),
        redis,
        // The lab has no Kubernetes (K3s and kubeadm cannot be downloaded here).
        k8s: None,
        // `cargo xtask failover` runs the PostgreSQL and Redis scenarios; kbz-failover (the
        // e2e suite) runs galera-node-crash and rabbitmq-node-crash from the inventory.
        galera: None,
        rabbitmq: None,
        lbs,
        power: Some(HostCommands {
            off: format!("{me} lab kill {{host}} >/dev/null"),
            on: format!("{me} lab start {{host}} >/dev/null"),
        }),
        isolate: Some(HostCommands {
            off: format!("{me} lab partition {{host}} >/dev/null"),
            on: format!("{me} lab heal {{host}} >/dev/null"),
        }),
        writers,
        routes: Default::default(),
    })
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// One line per run.
pub fn run_line(r: &RunReport) -> String {
    format!(
        "{} run {:>2}: victim {} ({} -> {}), acked {}, lost {} (members {:?}, acked at {:?}s from the fault), unexpected {}, new leader {}s, VIP moved {}s, writes resumed {}s, max gap {:.1}s, back {}s, members caught up in {:?}s, streaming {}, two primaries {}{}",
        r.scenario,
        r.run,
        r.victim,
        r.leader_before,
        r.leader_after,
        r.vip.acked,
        r.vip.lost,
        r.lost_on_member.values().collect::<Vec<_>>(),
        r.lost_ack_offsets
            .iter()
            .take(10)
            .map(|v| (v * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        r.vip.unexpected,
        opt(r.new_leader_secs),
        opt(r.vip_moved_secs),
        opt(r.writes_resumed_secs),
        r.max_write_gap_secs,
        opt(r.victim_streaming_secs),
        r.caught_up_secs
            .values()
            .map(|v| (v * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        r.replicas_streaming,
        r.two_primaries_seen,
        r.error.as_ref().map(|e| format!(", ERROR {e}")).unwrap_or_default()
    )
}

/// The summary table.
pub fn table(sums: &[Summary]) -> String {
    let mut s = format!(
        "{:<28} {:>4} {:>6} {:>9} {:>5} {:>8} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
        "scenario",
        "runs",
        "passed",
        "acked",
        "lost",
        "unexp",
        "gap med s",
        "gap max s",
        "leader med",
        "leader max",
        "back med"
    );
    for x in sums {
        s.push_str(&format!(
            "{:<28} {:>4} {:>6} {:>9} {:>5} {:>8} {:>10.1} {:>10.1} {:>10} {:>10} {:>8}\n",
            x.scenario,
            x.runs,
            x.passed,
            x.acked,
            x.lost + x.lost_on_members,
            x.unexpected,
            x.write_gap_median,
            x.write_gap_max,
            opt(x.new_leader_median),
            opt(x.new_leader_max),
            opt(x.victim_back_median)
        ));
    }
    s
}

pub fn run(args: Args) -> Result<ExitCode> {
    let scenario = Scenario::named(&args.scenario)?;
    let info = lab::info()?.context("no lab is up: `cargo xtask lab up` and install first")?;
    let rt = tokio::runtime::Runtime::new()?;
    let t = target(&rt, &info, args.writers)?;
    let timing = Timing {
        fault: Duration::from_secs(args.fault_secs),
        ..Timing::default()
    };
    let mut reports = Vec::new();
    for n in 1..=args.runs {
        let r = rt.block_on(kbz_faults::run_once(&scenario, &t, &timing, n));
        println!("{}", run_line(&r));
        if let Some(path) = &args.json {
            use std::io::Write;
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{}", serde_json::to_string(&r)?)?;
        }
        reports.push(r);
    }
    let sum = Summary::of(&reports);
    print!("\n{}", table(std::slice::from_ref(&sum)));
    println!("{}", serde_json::to_string(&sum)?);
    // Judged by the default budgets, as kbz-failover judges a fleet by its [failover].
    let cfg = kbz_core::config::FailoverConfig::default();
    let mut failed = false;
    for r in &reports {
        if let Some(e) = &r.error {
            println!("run {}: ERROR {e}", r.run);
            failed = true;
        }
        for b in kbz_faults::evaluate(&scenario, &cfg, r) {
            println!("{} {}", b.code, b.message);
            failed = true;
        }
    }
    Ok(if !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
