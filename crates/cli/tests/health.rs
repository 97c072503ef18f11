//! kbz-health's library on a fake fleet (strict FakeHosts: an unscripted command fails):
//! one batched script per host, the verdicts of every component from their answers, exit
//! codes, a diverged replica that must not look healthy, Prometheus output served over a
//! real HTTP server on loopback, and transition alerts.

use kbz_cli::health::{self, prom, serve::MetricsServer, state, HealthReport};
use kbz_core::health::{render_output, HealthStatus};
use kbz_core::{Config, Context, Host, Inventory, Role, Secrets};
use kbz_testkit::output;
use kbz_testkit::FakeConnector;

const DB: [(&str, &str); 3] = [
    ("db1", "192.0.2.21"),
    ("db2", "192.0.2.22"),
    ("db3", "192.0.2.23"),
];
const LB: [(&str, &str); 2] = [("lb1", "192.0.2.11"), ("lb2", "192.0.2.12")];

fn ctx() -> Context {
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
    let mut cfg = Config::default();
    cfg.cluster.name = "prod".into();
    cfg.vips
        .insert("postgres".into(), "192.0.2.100".parse().expect("ip"));
    cfg.vips
        .insert("redis".into(), "192.0.2.101".parse().expect("ip"));
    let names = kbz_stack::components()
        .iter()
        .flat_map(|c| c.secret_names())
        .collect::<Vec<_>>();
    Context::new(inv, cfg, Secrets::placeholders(names))
}

/// How the fake fleet answers.
#[derive(Clone)]
struct Fleet {
    /// Patroni role per db host.
    roles: [&'static str; 3],
    /// Timeline per db host.
    timelines: [u64; 3],
    /// The primary's two samples of pg_stat_replication.
    samples: (String, String),
    /// The VIP holder.
    vip_on: &'static str,
}

impl Default for Fleet {
    fn default() -> Self {
        let s = "db2|streaming|sync|4101|0|0\ndb3|streaming|async|4102|64|0.001\n".to_string();
        Fleet {
            roles: ["master", "replica", "replica"],
            timelines: [2, 2, 2],
            samples: (s.clone(), s),
            vip_on: "lb1",
        }
    }
}

const TRACKING: &str = "Reference ID    : C0A80001 (192.168.0.1)\nStratum         : 3\nSystem time     : 0.000012 seconds fast of NTP time\nLeap status     : Normal\n";

fn stats_csv() -> String {
    "# pxname,svname,qcur,status,weight\nstats,FRONTEND,,OPEN,\npostgres_primary,db1,0,UP,1\npostgres_primary,db2,0,DOWN,1\npostgres_primary,db3,0,DOWN,1\npostgres_primary,BACKEND,0,UP,1\npostgres_replicas,db1,0,DOWN,1\npostgres_replicas,db2,0,UP,1\npostgres_replicas,db3,0,UP,1\nredis_master,db1,0,UP,1\nredis_master,db2,0,DOWN,1\nredis_master,db3,0,DOWN,1\n".into()
}

fn redis_gather(i: usize) -> String {
    let info = if i == 0 {
        "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=192.0.2.22,port=6379,state=online,offset=9000,lag=0\r\nslave1:ip=192.0.2.23,port=6379,state=online,offset=9000,lag=0\r\nmaster_repl_offset:9000\r\n".to_string()
    } else {
        "# Replication\r\nrole:slave\r\nmaster_host:192.0.2.21\r\nmaster_port:6379\r\nmaster_link_status:up\r\nconnected_slaves:0\r\n".to_string()
    };
    let sentinel = "name\nkbz\nip\n192.0.2.21\nport\n6379\nflags\nmaster\nconfig-epoch\n0\nnum-slaves\n2\nnum-other-sentinels\n2\nquorum\n2\ndown-after-milliseconds\n5000\nfailover-timeout\n10000\nparallel-syncs\n1\n";
    format!("# kbz-redis gather\n@@ redis\n{info}@@ sentinel-master\n{sentinel}@@ sentinel-ckquorum\nOK 3 usable Sentinels. Quorum and failover authorization can be reached\n@@ end\n")
}

fn lb_answer(f: &Fleet, name: &str, ip: &str) -> String {
    let mut addrs = format!("keepalived=active\n1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet {ip}/24 brd 192.0.2.255 scope global eth0\n");
    if f.vip_on == name {
        addrs.push_str("2: eth0    inet 192.0.2.100/32 scope global eth0\n2: eth0    inet 192.0.2.101/32 scope global eth0\n");
    }
    render_output(&[
        ("base", "time", TRACKING, 0),
        ("base", "swap", "", 0),
        ("keepalived", "observe", &addrs, 0),
        ("haproxy", "stats", &stats_csv(), 0),
    ])
}

fn db_answer(f: &Fleet, i: usize) -> String {
    let (_, ip) = DB[i];
    let url = format!("http://{ip}:2379");
    let health = format!("{url} is healthy: successfully committed proposal: took = 2.3ms\n");
    let status = format!(
        r#"[{{"Endpoint":"{url}","Status":{{"header":{{"cluster_id":77,"member_id":{},"revision":40,"raft_term":3}},"version":"3.4.23","dbSize":20480,"leader":1,"raftIndex":50,"raftTerm":3}}}}]"#,
        i + 1
    );
    let patroni = format!(
        r#"{{"state": "running", "role": "{}", "server_version": 150005, "timeline": {}, "patroni": {{"version": "3.0.2", "scope": "prod"}}}}"#,
        f.roles[i], f.timelines[i]
    );
    let repl = if f.roles[i] == "master" {
        format!("{}@@sample\n{}", f.samples.0, f.samples.1)
    } else {
        "recovery\n".into()
    };
    render_output(&[
        ("base", "time", TRACKING, 0),
        ("base", "swap", "", 0),
        ("etcd", "health", &health, 0),
        ("etcd", "status", &status, 0),
        ("postgres", "patroni", &patroni, 0),
        ("postgres", "replication", &repl, 0),
        ("redis", "gather", &redis_gather(i), 0),
    ])
}

fn fleet(c: &Context, f: &Fleet) -> FakeConnector {
    let fleet = FakeConnector::debian_fleet(&c.inventory.hosts);
    for (n, ip) in LB {
        fleet.host(n).expect("lb").script(
            "# kbz-health batched probes",
            output(&lb_answer(f, n, ip), 0),
        );
    }
    for (i, (n, _)) in DB.iter().enumerate() {
        fleet
            .host(n)
            .expect("db")
            .script("# kbz-health batched probes", output(&db_answer(f, i), 0));
    }
    fleet
}

async fn run(c: &Context, fleet: &FakeConnector) -> HealthReport {
    health::check(c, &kbz_stack::components(), fleet).await
}

fn find<'a>(r: &'a HealthReport, host: &str, check: &str) -> &'a kbz_core::health::HealthCheck {
    r.checks
        .iter()
        .find(|c| c.host == host && c.check == check)
        .unwrap_or_else(|| panic!("no `{check}` on {host}: {:#?}", r.checks))
}

#[tokio::test]
async fn a_healthy_fleet_passes_every_check_in_one_round_trip_per_host() {
    let c = ctx();
    let f = fleet(&c, &Fleet::default());
    let r = run(&c, &f).await;
    let failing: Vec<_> = r.failing().collect();
    assert!(failing.is_empty(), "{failing:#?}");
    assert_eq!(r.status, HealthStatus::Ok);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.round_trips.total, 5);
    assert_eq!(r.round_trips.max_per_host, 1);
    for (name, h) in f.hosts() {
        assert_eq!(h.ran().len(), 1, "{name} ran {:?}", h.ran());
    }
    // Every component reported, with the checks the issue asks for.
    for (host, check) in [
        ("db1", "time synchronised"),
        ("lb2", "swap off"),
        ("lb1", "keepalived active"),
        ("lb1", "VIP postgres 192.0.2.100"),
        ("-", "front 192.0.2.100:5432"),
        ("db2", "member healthy"),
        ("-", "quorum"),
        ("-", "one leader"),
        ("db1", "one leader"),
        ("db3", "replica streaming"),
        ("db1", "synchronous standby"),
        ("db1", "one master"),
        ("db2", "sentinel"),
    ] {
        assert!(find(&r, host, check).is_ok());
    }
    assert_eq!(
        find(&r, "db3", "replica streaming")
            .metrics
            .get("replication_lag_bytes"),
        Some(&64.0)
    );
    let json: serde_json::Value = serde_json::from_str(&health::output::json(&r)).expect("json");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["round_trips"]["total"], 5);
    assert_eq!(json["round_trips"]["per_host"]["db1"], 1);
    assert!(json["checks"][0]["component"].is_string());
    // No secret in the scripts sent, the report, or the metrics.
    let text = format!("{}{}", health::output::json(&r), prom::render(&r, 0));
    for s in c.secrets.values() {
        assert!(!text.contains(s.expose()));
        for (_, h) in f.hosts() {
            assert!(h.ran().iter().all(|cmd| !cmd.contains(s.expose())));
        }
    }
}

#[tokio::test]
async fn a_powered_off_replica_is_degraded_not_down() {
    let c = ctx();
    let mut f = fleet(
        &c,
        &Fleet {
            samples: (
                "db2|streaming|sync|4101|0|0\n".into(),
                "db2|streaming|sync|4101|0|0\n".into(),
            ),
            ..Fleet::default()
        },
    );
    f.set_unreachable("db3");
    let r = run(&c, &f).await;
    assert_eq!(r.status, HealthStatus::Degraded, "{:#?}", r.checks);
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.unreachable, vec!["db3".to_string()]);
    assert_eq!(r.round_trips.per_host["db3"], 0);
    let ssh = find(&r, "db3", "reachable");
    assert_eq!(ssh.code, Some(kbz_errors::Code::E011));
    let repl = find(&r, "db3", "replica streaming");
    assert_eq!(repl.status, HealthStatus::Degraded);
    assert_eq!(repl.code, Some(kbz_errors::Code::E038));
    assert!(repl.fix.is_some());
    assert!(find(&r, "-", "quorum").is_ok());
    assert!(find(&r, "db1", "one leader").is_ok());
    assert!(find(&r, "db1", "synchronous standby").is_ok());
}

#[tokio::test]
async fn a_diverged_replica_does_not_look_healthy() {
    let c = ctx();
    // db2 keeps reconnecting (a new walsender each time) and is on the old timeline.
    let f = fleet(
        &c,
        &Fleet {
            timelines: [3, 2, 3],
            samples: (
                "db2|streaming|async|4101|0|0\ndb3|streaming|sync|4102|0|0\n".into(),
                "db2|startup|async|4150|-1|0\ndb3|streaming|sync|4102|0|0\n".into(),
            ),
            ..Fleet::default()
        },
    );
    let r = run(&c, &f).await;
    let db2 = find(&r, "db2", "replica streaming");
    assert_eq!(db2.status, HealthStatus::Degraded, "{db2:?}");
    assert!(db2.detail.contains("timeline 2"), "{}", db2.detail);
    assert!(find(&r, "db3", "replica streaming").is_ok());
    assert_eq!(r.exit_code(), 1);

    // Streaming in both samples but through a new connection each time: still not healthy.
    let f = fleet(
        &c,
        &Fleet {
            samples: (
                "db2|streaming|sync|4101|0|0\ndb3|streaming|async|4102|0|0\n".into(),
                "db2|streaming|sync|4101|0|0\ndb3|streaming|async|4177|0|0\n".into(),
            ),
            ..Fleet::default()
        },
    );
    let r = run(&c, &f).await;
    let db3 = find(&r, "db3", "replica streaming");
    assert!(
        !db3.is_ok() && db3.detail.contains("reconnected"),
        "{db3:?}"
    );
}

#[tokio::test]
async fn no_leader_is_down_and_no_synchronous_standby_is_degraded() {
    let c = ctx();
    let f = fleet(
        &c,
        &Fleet {
            roles: ["replica", "replica", "replica"],
            ..Fleet::default()
        },
    );
    let r = run(&c, &f).await;
    let leader = r
        .checks
        .iter()
        .find(|c| c.component == "postgres" && c.check == "one leader")
        .expect("leader row");
    assert_eq!(leader.host, "-");
    assert_eq!(leader.status, HealthStatus::Down);
    assert_eq!(r.exit_code(), 2);

    let f = fleet(
        &c,
        &Fleet {
            samples: (
                "db2|streaming|async|4101|0|0\ndb3|streaming|async|4102|0|0\n".into(),
                "db2|streaming|async|4101|0|0\ndb3|streaming|async|4102|0|0\n".into(),
            ),
            ..Fleet::default()
        },
    );
    let r = run(&c, &f).await;
    let sync = find(&r, "db1", "synchronous standby");
    assert_eq!(sync.status, HealthStatus::Degraded);
    assert_eq!(r.exit_code(), 1);
}

#[tokio::test]
async fn a_vip_held_twice_is_down() {
    let c = ctx();
    // lb2 claims the postgres VIP too (split brain).
    let fresh = FakeConnector::debian_fleet(&c.inventory.hosts);
    let both = Fleet {
        vip_on: "lb1",
        ..Fleet::default()
    };
    for (n, ip) in LB {
        let mut a = lb_answer(&both, n, ip);
        if n == "lb2" {
            a = a.replace(
                "inet 192.0.2.12/24 brd 192.0.2.255 scope global eth0\n",
                "inet 192.0.2.12/24 brd 192.0.2.255 scope global eth0\n2: eth0    inet 192.0.2.100/32 scope global eth0\n",
            );
        }
        fresh
            .host(n)
            .expect("lb")
            .script("# kbz-health", output(&a, 0));
    }
    for (i, (n, _)) in DB.iter().enumerate() {
        fresh
            .host(n)
            .expect("db")
            .script("# kbz-health", output(&db_answer(&both, i), 0));
    }
    let r = run(&c, &fresh).await;
    let vip = r
        .checks
        .iter()
        .find(|c| c.check == "VIP postgres 192.0.2.100")
        .expect("vip");
    assert_eq!(vip.status, HealthStatus::Down, "{vip:?}");
    assert_eq!(vip.host, "lb1,lb2");
    assert_eq!(vip.code, Some(kbz_errors::Code::E037));
}

#[tokio::test]
async fn metrics_are_served_over_http_and_written_atomically() {
    let c = ctx();
    let f = fleet(&c, &Fleet::default());
    let r = run(&c, &f).await;
    let text = prom::render(&r, 1_700_000_000);
    assert!(
        text.contains(
            "kbz_health_check{component=\"postgres\",host=\"db3\",check=\"replica streaming\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("kbz_replication_lag_bytes{component=\"postgres\",host=\"db3\"} 64\n"),
        "{text}"
    );
    assert!(text.contains("kbz_health_status{cluster=\"prod\"} 0\n"));
    assert!(text.contains("kbz_health_round_trips{cluster=\"prod\"} 5\n"));
    // Every sample line is `name{labels} value` and every metric has HELP and TYPE.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("value");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().expect("name");
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
    }

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("kbz.prom");
    prom::write_atomic(&file, &text).expect("write");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), text);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert_eq!(leftovers.len(), 1, "no temporary file stays behind");

    let served = text.clone();
    let server = MetricsServer::start("127.0.0.1:0", move || served.clone()).expect("listen");
    let base = format!("http://{}", server.addr());
    let resp = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    assert_eq!(resp.text().await.expect("body"), text);
    let missing = reqwest::get(format!("{base}/nope")).await.expect("404");
    assert_eq!(missing.status(), 404);
    server.stop();
    assert!(
        reqwest::get(format!("{base}/metrics")).await.is_err(),
        "stopped"
    );
}

#[tokio::test]
async fn alerts_fire_on_transitions_only() {
    let c = ctx();
    let dir = tempfile::tempdir().expect("tmp");
    let healthy = run(&c, &fleet(&c, &Fleet::default())).await;
    let mut off = fleet(&c, &Fleet::default());
    off.set_unreachable("db3");
    let degraded = run(&c, &off).await;

    let mut sent = Vec::new();
    for r in [&healthy, &healthy, &degraded, &degraded, &healthy, &healthy] {
        if let Some(e) = state::transition(state::last(dir.path()), r) {
            sent.push((e.level, e.title));
        }
        state::record(dir.path(), r).expect("record");
    }
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].0, kbz_core::Level::Warn);
    assert!(sent[0].1.contains("(was ok)"), "{:?}", sent[0]);
    assert_eq!(sent[1].0, kbz_core::Level::Info);
    assert!(
        sent[1].1.contains("healthy") && sent[1].1.contains("(was degraded)"),
        "{:?}",
        sent[1]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state::path(dir.path()))
        .expect("state")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}

#[test]
fn every_batched_script_is_valid_sh() {
    let c = ctx();
    let scripts: Vec<String> = c
        .inventory
        .hosts
        .iter()
        .map(|h| {
            let probes: Vec<(String, kbz_core::health::Probe)> = kbz_stack::components()
                .iter()
                .filter(|comp| comp.applies_to(h))
                .flat_map(|comp| {
                    comp.health_probes(&c, h)
                        .into_iter()
                        .map(|p| (comp.name().to_string(), p))
                })
                .collect();
            kbz_core::health::host_script(&probes)
        })
        .collect();
    assert_eq!(scripts.len(), 5);
    kbz_testkit::assert_valid_sh(&scripts);
}
