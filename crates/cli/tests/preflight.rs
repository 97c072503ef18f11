//! The preflight on a fake fleet (strict FakeHosts: an unscripted command fails): one
//! read-only script per host, each check at and past its threshold, every problem of every
//! host in one report, a minimum raised in kbz.toml, the gate that stops an install before
//! anything changes, `--skip-preflight`, and the port map.

use kbz_cli::preflight::{self as pre, Gate};
use kbz_core::preflight::run::HostPlan;
use kbz_core::preflight::script::{END, HEADER};
use kbz_core::preflight::{Finding, Report, Severity};
use kbz_core::Executor;
use kbz_core::{Config, Context, Engine, Host, Inventory, Role, RunOptions, Secrets};
use kbz_errors::Code;
use kbz_testkit::{output, FakeConnector};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const DB: [(&str, &str); 3] = [
    ("db1", "192.0.2.21"),
    ("db2", "192.0.2.22"),
    ("db3", "192.0.2.23"),
];
const LB: [(&str, &str); 2] = [("lb1", "192.0.2.11"), ("lb2", "192.0.2.12")];

fn ctx_with(cfg: Config) -> Context {
    let mut hosts = Vec::new();
    for (n, ip) in LB {
        hosts.push(Host::new(n, ip.parse().expect("ip"), &[Role::Lb]));
    }
    for (n, ip) in DB {
        hosts.push(Host::new(
            n,
            ip.parse().expect("ip"),
            &[Role::Etcd, Role::Postgres, Role::Redis],
        ));
    }
    let inv = Inventory {
        path: "servers.tsv".into(),
        hosts,
    };
    let names = kbz_stack::components()
        .iter()
        .flat_map(|c| c.secret_names())
        .collect::<Vec<_>>();
    Context::new(inv, cfg, Secrets::placeholders(names))
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.cluster.name = "prod".into();
    cfg.vips
        .insert("postgres".into(), "192.0.2.100".parse().expect("ip"));
    cfg.vips
        .insert("redis".into(), "192.0.2.101".parse().expect("ip"));
    cfg
}

/// How one fake host answers the preflight script.
#[derive(Clone)]
struct Ans {
    cpus: u32,
    mem_mb: u64,
    swap_mb: u64,
    os: &'static str,
    kernel: &'static str,
    /// Free MiB on every directory, unless named in `disk`.
    free_mb: u64,
    disk: Vec<(&'static str, u64)>,
    ntp: &'static str,
    resolve_extra: Option<&'static str>,
    has_address: bool,
    listeners: Vec<String>,
    /// Paths of the host plan that exist.
    present: Vec<String>,
    apt: String,
    rtt: String,
    pmtu_ok: bool,
    mtu: u32,
    clock_skew_ms: i64,
    extra: Option<&'static str>,
}

impl Default for Ans {
    fn default() -> Self {
        Ans {
            cpus: 4,
            mem_mb: 8192,
            swap_mb: 0,
            os: "debian 12",
            kernel: "6.1.0-18-amd64",
            free_mb: 50_000,
            disk: Vec::new(),
            ntp: "yes",
            resolve_extra: None,
            has_address: true,
            listeners: Vec::new(),
            present: Vec::new(),
            apt: "ok http://deb.debian.org/debian/dists/bookworm/InRelease".into(),
            rtt: "0.3".into(),
            pmtu_ok: true,
            mtu: 1500,
            clock_skew_ms: 0,
            extra: None,
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_nanos() as i64
}

/// The answer text of `a` for `plan`'s host, as the real script prints it.
fn render(plan: &HostPlan, a: &Ans) -> String {
    let start = now_ns() + a.clock_skew_ms * 1_000_000;
    let ip = plan.host.ip;
    let mut s = format!("{HEADER}\nclock_start {start}\ncpus {}\n", a.cpus);
    s += &format!(
        "mem_kb {}\nswap_kb {}\nos {}\nkernel {}\n",
        a.mem_mb * 1024,
        a.swap_mb * 1024,
        a.os,
        a.kernel
    );
    for d in &plan.input.dirs {
        let mb = a
            .disk
            .iter()
            .find(|(x, _)| x == d)
            .map(|(_, m)| *m)
            .unwrap_or(a.free_mb);
        s += &format!("disk {d} {}\n", mb * 1024);
    }
    s += &format!(
        "ntp {}\nhostname {}\nresolve {ip}\n",
        a.ntp, plan.host.hostname
    );
    if let Some(r) = a.resolve_extra {
        s += &format!("resolve {r}\n");
    }
    s += "addr lo 127.0.0.1\n";
    if a.has_address {
        s += &format!("addr eth0 {ip}\n");
    }
    s += &format!("mtu eth0 {}\n", a.mtu);
    for l in &a.listeners {
        s += &format!("listen {l}\n");
    }
    s += "listen_end\n";
    for (i, p) in plan.input.paths.iter().enumerate() {
        if a.present.contains(&p.path) {
            s += &format!("path {i} {}\n", p.path.replace('*', "15"));
        }
    }
    s += &format!("apt {}\n", a.apt);
    for p in &plan.input.peers {
        s += &format!("rtt {p} {}\n", a.rtt);
        s += &format!(
            "pmtu {p} {} {}\n",
            a.mtu,
            if a.pmtu_ok { "ok" } else { "fail" }
        );
    }
    if let Some(x) = a.extra {
        s += &format!("{x}\n");
    }
    s += &format!("clock_end {}\n{END}\n", start + 30_000_000);
    s
}

struct Fleet {
    ctx: Context,
    engine: Engine,
    fleet: Arc<FakeConnector>,
}

fn fleet_with(cfg: Config, answers: &[(&str, Ans)]) -> Fleet {
    let ctx = ctx_with(cfg);
    let components = kbz_stack::components();
    let fleet = Arc::new(FakeConnector::debian_fleet(&ctx.inventory.hosts));
    for h in &ctx.inventory.hosts {
        let a = answers
            .iter()
            .find(|(n, _)| *n == h.hostname)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let plan = HostPlan::new(&ctx, &components, h);
        fleet
            .host(&h.hostname)
            .expect("fake host")
            .script(HEADER, output(&render(&plan, &a), 0));
    }
    let engine = Engine::new(ctx.clone(), components, fleet.clone());
    Fleet { ctx, engine, fleet }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn check(answers: &[(&str, Ans)]) -> (Report, Fleet) {
    check_with(config(), answers)
}

fn check_with(cfg: Config, answers: &[(&str, Ans)]) -> (Report, Fleet) {
    let f = fleet_with(cfg, answers);
    let r = rt()
        .block_on(f.engine.preflight(&RunOptions::default()))
        .expect("preflight");
    (r, f)
}

/// Every fake host got exactly the preflight script: nothing written, applied or run else.
fn assert_untouched(f: &Fleet) {
    for (name, h) in f.fleet.hosts() {
        assert!(h.applied().is_empty(), "{name}: {:?}", h.applied());
        let ran = h.ran();
        assert_eq!(ran.len(), 1, "{name} ran {ran:?}");
        assert!(ran[0].contains(HEADER), "{name}: {}", ran[0]);
        assert_eq!(h.round_trips(), 1, "{name}");
    }
}

fn pg_listener(process: &str) -> String {
    format!("LISTEN 0 200 192.0.2.21:5432 0.0.0.0:* users:((\"{process}\",pid=812,fd=6))")
}

#[test]
fn a_healthy_fleet_passes_in_one_read_only_round_trip_per_host() {
    let (r, f) = check(&[]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(r.ok());
    assert_eq!(r.round_trips.values().copied().collect::<Vec<_>>(), [1; 5]);
    assert!(r.passed["db1"] > 20, "{:?}", r.passed);
    assert_untouched(&f);
}

#[test]
fn kbz_own_services_on_their_ports_pass_a_rerun() {
    let own = Ans {
        listeners: vec![
            pg_listener("postgres"),
            "LISTEN 0 200 127.0.0.1:5432 0.0.0.0:* users:((\"postgres\",pid=812,fd=7))".into(),
            "LISTEN 0 5 192.0.2.21:8008 0.0.0.0:* users:((\"patroni\",pid=700,fd=5))".into(),
            "LISTEN 0 4096 192.0.2.21:2379 0.0.0.0:* users:((\"etcd\",pid=600,fd=7))".into(),
            "LISTEN 0 511 192.0.2.21:6379 0.0.0.0:* users:((\"redis-server\",pid=500,fd=6))".into(),
            "LISTEN 0 511 127.0.0.1:26379 0.0.0.0:* users:((\"redis-sentinel\",pid=501,fd=6))"
                .into(),
            "LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))".into(),
        ],
        present: vec![
            "/etc/patroni/config.yml".into(),
            "/etc/systemd/system/etcd.service.d/kbz.conf".into(),
            "/etc/systemd/system/redis-server.service.d/kbz.conf".into(),
            "/etc/systemd/system/redis-sentinel.service.d/kbz.conf".into(),
        ],
        ..Ans::default()
    };
    let lb = Ans {
        listeners: vec![
            "LISTEN 0 4096 192.0.2.100:5432 0.0.0.0:* users:((\"haproxy\",pid=90,fd=7),(\"haproxy\",pid=91,fd=7))".into(),
            "LISTEN 0 4096 192.0.2.11:8404 0.0.0.0:* users:((\"haproxy\",pid=90,fd=8))".into(),
        ],
        present: vec!["/etc/haproxy/haproxy.cfg".into()],
        ..Ans::default()
    };
    let (r, _) = check(&[("db1", own), ("lb1", lb)]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

/// One variation of db1's answer and the one finding it must produce (or none).
fn one(a: Ans) -> Option<Finding> {
    one_with(config(), a)
}

fn one_with(cfg: Config, a: Ans) -> Option<Finding> {
    let (r, f) = check_with(cfg, &[("db1", a)]);
    assert_untouched(&f);
    let mine: Vec<&Finding> = r.findings.iter().collect();
    assert!(mine.len() <= 1, "{mine:#?}");
    mine.first().map(|f| (*f).clone())
}

#[track_caller]
fn expect(f: Option<Finding>, check: &str, severity: Severity, code: Code, detail: &str) {
    let f = f.unwrap_or_else(|| panic!("no finding for {check}"));
    assert_eq!(
        (f.host.as_str(), f.check.as_str(), f.severity, f.code),
        ("db1", check, severity, code),
        "{f:#?}"
    );
    assert!(f.detail.contains(detail), "{f:#?}");
    assert!(!f.fix.is_empty());
}

#[test]
fn cpu_memory_swap_and_disk_at_and_past_their_minimums() {
    use Severity::*;
    expect(
        one(Ans {
            cpus: 1,
            ..Ans::default()
        }),
        "cpus",
        Error,
        Code::E076,
        "1 CPU(s) (minimum 2 for postgres)",
    );
    assert_eq!(
        one(Ans {
            cpus: 2,
            ..Ans::default()
        }),
        None
    );
    expect(
        one(Ans {
            mem_mb: 2047,
            ..Ans::default()
        }),
        "memory",
        Error,
        Code::E076,
        "RAM: 2047 MiB (minimum 2048 MiB for postgres)",
    );
    assert_eq!(
        one(Ans {
            mem_mb: 2048,
            ..Ans::default()
        }),
        None
    );
    expect(
        one(Ans {
            swap_mb: 1024,
            ..Ans::default()
        }),
        "swap",
        Warning,
        Code::E076,
        "swap is on (1024 MiB)",
    );
    expect(
        one(Ans {
            disk: vec![("/var/lib/postgresql", 10239)],
            ..Ans::default()
        }),
        "disk /var/lib/postgresql",
        Error,
        Code::E026,
        "10239 MiB free on /var/lib/postgresql (minimum 10240 MiB for postgres)",
    );
    assert_eq!(
        one(Ans {
            disk: vec![("/var/lib/postgresql", 10240)],
            ..Ans::default()
        }),
        None
    );
    expect(
        one(Ans {
            disk: vec![("/", 4000)],
            ..Ans::default()
        }),
        "disk /",
        Error,
        Code::E026,
        "minimum 4096 MiB for base",
    );
}

#[test]
fn minimums_come_from_kbz_toml() {
    let cfg = Config::parse(
        "kbz.toml",
        "[cluster]\nname = \"prod\"\n\n[vips]\npostgres = \"192.0.2.100\"\nredis = \"192.0.2.101\"\n\n[preflight]\nmax_rtt_ms = 1\n\n[preflight.roles.postgres]\nmemory_mb = 16384\n",
    )
    .expect("config");
    let (r, _) = check_with(cfg, &[]);
    let memory: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.check == "memory")
        .map(|f| f.host.as_str())
        .collect();
    assert_eq!(memory, ["db1", "db2", "db3"], "{:#?}", r.findings);
    assert!(r.findings.iter().all(|f| f.check == "memory"
        && f.detail
            .contains("RAM: 8192 MiB (minimum 16384 MiB for postgres)")));
    // 0.3 ms passes 1 ms; the lb hosts (512 MiB minimum) pass.
    assert_eq!(r.errors(), 3);
}

#[test]
fn os_kernel_time_and_names() {
    use Severity::*;
    expect(
        one(Ans {
            os: "centos 9",
            ..Ans::default()
        }),
        "os",
        Error,
        Code::E032,
        "centos 9",
    );
    expect(
        one(Ans {
            os: "debian 10",
            ..Ans::default()
        }),
        "os",
        Error,
        Code::E032,
        "debian 10",
    );
    assert_eq!(
        one(Ans {
            os: "ubuntu 22.04",
            ..Ans::default()
        }),
        None
    );
    expect(
        one(Ans {
            kernel: "4.14.0-1",
            ..Ans::default()
        }),
        "kernel",
        Error,
        Code::E032,
        "minimum 4.19",
    );
    assert_eq!(
        one(Ans {
            kernel: "4.19.0-27-amd64",
            ..Ans::default()
        }),
        None
    );
    expect(
        one(Ans {
            ntp: "no",
            ..Ans::default()
        }),
        "time sync",
        Warning,
        Code::E078,
        "not synchronised",
    );
    expect(
        one(Ans {
            has_address: false,
            ..Ans::default()
        }),
        "address",
        Error,
        Code::E079,
        "192.0.2.21 (servers.tsv) is on no interface",
    );
    expect(
        one(Ans {
            resolve_extra: Some("198.51.100.7"),
            ..Ans::default()
        }),
        "hostname",
        Warning,
        Code::E079,
        "db1 resolves to 198.51.100.7",
    );
    assert_eq!(
        one(Ans {
            resolve_extra: Some("127.0.1.1"),
            ..Ans::default()
        }),
        None
    );
}

#[test]
fn clocks_disagreeing_past_the_maximum_stop_the_install() {
    let (r, _) = check(&[(
        "db1",
        Ans {
            clock_skew_ms: 2_000,
            ..Ans::default()
        },
    )]);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(
        (f.host.as_str(), f.check.as_str(), f.code, f.severity),
        ("db1", "clock", Code::E078, Severity::Error)
    );
    assert!(
        f.detail
            .contains("ahead of the other hosts' (maximum 500 ms)"),
        "{}",
        f.detail
    );
    let (r, _) = check(&[(
        "db1",
        Ans {
            clock_skew_ms: 300,
            ..Ans::default()
        },
    )]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn ports_held_by_a_foreign_process_or_another_install() {
    use Severity::*;
    expect(
        one(Ans {
            listeners: vec![pg_listener("python3")],
            ..Ans::default()
        }),
        "port 5432",
        Error,
        Code::E077,
        "192.0.2.21:5432 is held by python3, not by PostgreSQL member's postgres",
    );
    // A listener on every address conflicts too.
    expect(
        one(Ans {
            listeners: vec!["LISTEN 0 5 0.0.0.0:8008 0.0.0.0:* users:((\"nc\",pid=4,fd=3))".into()],
            ..Ans::default()
        }),
        "port 8008",
        Error,
        Code::E077,
        "*:8008 is held by nc",
    );
    expect(
        one(Ans {
            listeners: vec!["LISTEN 0 5 0.0.0.0:2380 0.0.0.0:*".into()],
            ..Ans::default()
        }),
        "port 2380",
        Error,
        Code::E077,
        "a process `ss` does not name",
    );
    // Another address on the same port is not kbz's business.
    assert_eq!(
        one(Ans {
            listeners: vec![
                "LISTEN 0 5 10.9.9.9:5432 0.0.0.0:* users:((\"python3\",pid=4,fd=3))".into()
            ],
            ..Ans::default()
        }),
        None
    );
    // PostgreSQL that kbz did not install (no Patroni config): another install, a warning.
    expect(
        one(Ans {
            listeners: vec![pg_listener("postgres")],
            ..Ans::default()
        }),
        "port 5432",
        Warning,
        Code::E077,
        "held by postgres that kbz did not install (no /etc/patroni/config.yml)",
    );
    expect(
        one(Ans {
            present: vec!["/etc/postgresql/15/main/postgresql.conf".into()],
            ..Ans::default()
        }),
        "conflicting install",
        Warning,
        Code::E077,
        "Debian's default PostgreSQL cluster 15/main (/etc/postgresql/15/main/postgresql.conf)",
    );
}

#[test]
fn apt_and_the_network_between_quorum_members() {
    use Severity::*;
    expect(
        one(Ans {
            apt: "fail http://deb.debian.org/debian/dists/bookworm/InRelease".into(),
            ..Ans::default()
        }),
        "apt",
        Error,
        Code::E019,
        "cannot download http://deb.debian.org/debian/dists/bookworm/InRelease",
    );
    let mut cfg = config();
    cfg.cluster.apt_proxy = Some("http://192.0.2.5:3142".into());
    let f = one_with(
        cfg,
        Ans {
            apt: "fail http://deb.debian.org/x".into(),
            ..Ans::default()
        },
    );
    expect(
        f,
        "apt",
        Error,
        Code::E019,
        "through the proxy http://192.0.2.5:3142",
    );

    let (r, _) = check(&[(
        "db1",
        Ans {
            rtt: "10.5".into(),
            ..Ans::default()
        },
    )]);
    let rtt: Vec<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.check.as_str(), f.detail.as_str()))
        .collect();
    assert_eq!(rtt.len(), 2, "{rtt:?}");
    assert!(r.findings.iter().all(|f| f.severity == Warning
        && f.code == Code::E080
        && f.detail.contains("10.5 ms (warning above 10 ms)")));
    assert_eq!(rtt[0].0, "rtt db2 (192.0.2.22)");
    assert!(r.ok(), "RTT is a warning");
    assert_eq!(
        one(Ans {
            rtt: "10".into(),
            ..Ans::default()
        }),
        None
    );
    let (r, _) = check(&[(
        "db1",
        Ans {
            rtt: "lost".into(),
            pmtu_ok: false,
            ..Ans::default()
        },
    )]);
    assert_eq!(r.findings.len(), 4, "{:#?}", r.findings);
    assert!(r
        .findings
        .iter()
        .any(|f| f.check == "mtu db3 (192.0.2.23)" && f.detail.contains("1500-byte packet")));
    let (r, _) = check(&[(
        "db2",
        Ans {
            mtu: 9000,
            ..Ans::default()
        },
    )]);
    let mtu: Vec<&Finding> = r.findings.iter().filter(|f| f.host == "-").collect();
    assert_eq!(
        mtu.len(),
        3,
        "etcd, postgres and redis members: {:#?}",
        r.findings
    );
    assert!(
        mtu[0].detail.contains("db1 1500, db2 9000, db3 1500"),
        "{:#?}",
        mtu[0]
    );
}

#[test]
fn an_unexpected_line_is_an_error_not_ignored() {
    let f = one(Ans {
        extra: Some("surprise 1"),
        ..Ans::default()
    });
    expect(
        f,
        "answer",
        Severity::Error,
        Code::E081,
        "unexpected line `surprise 1`",
    );
}

#[test]
fn every_problem_of_every_host_in_one_table_errors_first() {
    let (r, f) = check(&[
        (
            "lb2",
            Ans {
                mem_mb: 256,
                ntp: "no",
                ..Ans::default()
            },
        ),
        (
            "db1",
            Ans {
                listeners: vec![pg_listener("python3")],
                ..Ans::default()
            },
        ),
        (
            "db3",
            Ans {
                disk: vec![("/var/lib/etcd", 100)],
                swap_mb: 512,
                ..Ans::default()
            },
        ),
    ]);
    assert_untouched(&f);
    let rows: Vec<(&str, &str, Severity)> = r
        .findings
        .iter()
        .map(|f| (f.host.as_str(), f.check.as_str(), f.severity))
        .collect();
    use Severity::*;
    assert_eq!(
        rows,
        [
            ("db1", "port 5432", Error),
            ("db3", "disk /var/lib/etcd", Error),
            ("lb2", "memory", Error),
            ("db3", "swap", Warning),
            ("lb2", "time sync", Warning),
        ]
    );
    let table = pre::render(&r);
    let codes = [Code::E077, Code::E026, Code::E078].map(|c| c.to_string());
    for needle in [
        "host  ",
        "python3",
        "RAM: 256 MiB (minimum 512 MiB for base)",
        "fix",
    ]
    .into_iter()
    .chain(codes.iter().map(String::as_str))
    {
        assert!(table.contains(needle), "{needle}:\n{table}");
    }
    assert!(table.contains("preflight: 5 host(s) checked, "), "{table}");
    assert!(table.contains("3 error(s), 2 warning(s)"), "{table}");
    let json = serde_json::to_value(Gate::Checked { report: r.clone() }).expect("json");
    assert_eq!(json["status"], "checked");
    assert_eq!(json["findings"][0]["code"], Code::E077.to_string());
    assert_eq!(json["findings"][0]["severity"], "error");
    assert_eq!(json["findings"][0]["host"], "db1");
}

#[test]
fn errors_stop_the_install_before_any_change_and_warnings_do_not() {
    let opts = RunOptions::default();
    let f = fleet_with(
        config(),
        &[(
            "db1",
            Ans {
                listeners: vec![pg_listener("python3")],
                ..Ans::default()
            },
        )],
    );
    let gate = rt()
        .block_on(pre::gate(&f.engine, &opts, false))
        .expect("gate");
    assert!(gate.stops());
    assert_untouched(&f);
    assert!(pre::summary_line(&gate).contains("preflight: 1 error(s), 0 warning(s) on 5 host(s)"));

    let f = fleet_with(
        config(),
        &[(
            "db1",
            Ans {
                swap_mb: 100,
                ..Ans::default()
            },
        )],
    );
    let gate = rt()
        .block_on(pre::gate(&f.engine, &opts, false))
        .expect("gate");
    assert!(!gate.stops(), "a warning does not stop the install");
}

#[test]
fn skip_preflight_asks_no_host_and_the_summary_says_so() {
    let f = fleet_with(
        config(),
        &[(
            "db1",
            Ans {
                cpus: 1,
                ..Ans::default()
            },
        )],
    );
    let gate = rt()
        .block_on(pre::gate(&f.engine, &RunOptions::default(), true))
        .expect("gate");
    assert_eq!(gate, Gate::Skipped);
    assert!(!gate.stops());
    for (name, h) in f.fleet.hosts() {
        assert!(h.ran().is_empty(), "{name}");
    }
    assert!(pre::summary_line(&gate).contains("SKIPPED (--skip-preflight)"));
    assert_eq!(
        serde_json::to_value(&gate).expect("json")["status"],
        "skipped"
    );
}

#[test]
fn the_port_map_names_each_endpoint_and_what_answers_there() {
    let f = fleet_with(config(), &[]);
    let map = rt().block_on(pre::port_map(&f.ctx, &kbz_stack::components(), false));
    let rows: Vec<String> = map
        .iter()
        .map(|e| format!("{} {} via {}", e.service, e.address, e.via))
        .collect();
    for want in [
        "PostgreSQL primary 192.0.2.100:5432 via HAProxy on lb1, lb2",
        "PostgreSQL replicas (read-only) 192.0.2.100:5433 via HAProxy on lb1, lb2",
        "Redis master 192.0.2.101:6379 via HAProxy on lb1, lb2",
        "PostgreSQL member 192.0.2.21:5432 via member db1",
        "Redis Sentinel 192.0.2.23:26379 via member db3",
        "etcd peer 192.0.2.22:2380 via member db2",
        "HAProxy stats 192.0.2.11:8404 via member lb1",
    ] {
        assert!(rows.iter().any(|r| r == want), "{want} not in {rows:#?}");
    }
    assert!(!rows.iter().any(|r| r.contains("127.0.0.1")), "{rows:#?}");
    let table = pre::render_port_map(&map);
    assert!(table.starts_with("service"), "{table}");
}

#[test]
fn the_offline_plan_lists_each_hosts_checks() {
    let ctx = ctx_with(config());
    let rows = kbz_core::preflight::plan(&ctx, &kbz_stack::components());
    let db1: Vec<String> = rows
        .iter()
        .filter(|r| r.host == "db1")
        .map(|r| format!("{}: {}", r.check, r.expect))
        .collect();
    for want in [
        "cpus: >= 2 (postgres)",
        "memory: >= 2048 MiB (postgres)",
        "disk /var/lib/postgresql: >= 10240 MiB free (postgres)",
        "port 5432: 192.0.2.21:5432, 127.0.0.1:5432 free or held by postgres (PostgreSQL member)",
        "conflicting install: no Debian's default PostgreSQL cluster 15/main (/etc/postgresql/15/main/postgresql.conf)",
        "rtt, mtu: to db2, db3: round trip <= 10 ms, full-size packets pass (warnings)",
    ] {
        assert!(db1.iter().any(|r| r == want), "{want} not in {db1:#?}");
    }
}
