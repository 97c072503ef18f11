//! The Redis workload, checker and scenario runner against real daemons on loopback, started
//! (daemonized, with pid files) and stopped by pid by the test, whatever its outcome:
//!
//! - a master and a replica: the writers' every acknowledgement is recorded, they reconnect
//!   after the master is killed and comes back empty, and the checker reports exactly the
//!   writes acknowledged before the kill as lost, on the master and on the replica that
//!   resynced from it; the scratch keys are removed at the end;
//! - three Redis servers and three Sentinels behind a small TCP forwarder standing in for
//!   HAProxy on the VIP (it forwards to the master the Sentinels agree on): the real
//!   `redis-master-crash` run with the power commands replaced by `kill -9` of the master's
//!   pid and a restart of it. The victim is the master the Sentinels name, the new master's
//!   time is when every surviving Sentinel names another, the read-back covers the VIP and
//!   every member, and the run is inside its default budget.
//!
//! Fails with the `apt-get install` line when redis-server or redis-sentinel is missing.

use kbz_core::{Executor, Host, Role, Secret};
use kbz_exec::LocalExecutor;
use kbz_faults::redis::{self as rd, RedisWriter, PREFIX};
use kbz_faults::{
    verdict, HostCommands, Member, PgTarget, RedisTarget, Scenario, Target, Timing, Workload,
    Writer,
};
use kbz_redis::client::{self, Endpoint};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASS: &str = "loopback-redis-pass";
const SENTINEL_PASS: &str = "loopback-sentinel-pass";

fn require_redis() {
    kbz_testkit::require_tool("redis-server", "redis-server");
    kbz_testkit::require_tool("redis-sentinel", "redis-sentinel");
}

/// Daemons the test started, killed by the pid in their pid file when the test ends.
struct Daemons {
    pidfiles: Vec<PathBuf>,
}

impl Daemons {
    fn new() -> Daemons {
        Daemons {
            pidfiles: Vec::new(),
        }
    }

    /// Starts a daemon from `conf` (which names `pidfile`) and waits for its pid file.
    fn start(&mut self, bin: &str, conf: &Path, pidfile: &Path) {
        let _ = std::fs::remove_file(pidfile);
        let st = Command::new(bin)
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start daemon");
        assert!(st.success(), "{bin} {} did not start", conf.display());
        let since = Instant::now();
        while pid(pidfile).is_none() {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "no pid file {}",
                pidfile.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if !self.pidfiles.iter().any(|p| p == pidfile) {
            self.pidfiles.push(pidfile.to_path_buf());
        }
    }
}

fn pid(pidfile: &Path) -> Option<i32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn kill(pidfile: &Path) {
    if let Some(p) = pid(pidfile) {
        let _ = Command::new("kill").arg("-9").arg(p.to_string()).status();
        // Until it is gone (a restart must find the port free).
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{p}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(pidfile);
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for p in &self.pidfiles {
            kill(p);
        }
    }
}

/// A port free on every one of the addresses.
fn free_port(ips: &[IpAddr]) -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind((ips[0], 0)).expect("bind");
        let p = l.local_addr().expect("addr").port();
        drop(l);
        if ips.iter().all(|ip| TcpListener::bind((*ip, p)).is_ok()) {
            return p;
        }
    }
    panic!("no free port on {ips:?}");
}

/// One loopback "host": its Redis (and optionally Sentinel) files under `dir/<name>`.
struct Node {
    ip: IpAddr,
    dir: PathBuf,
}

impl Node {
    fn new(root: &Path, ip: &str) -> Node {
        let dir = root.join(ip);
        std::fs::create_dir_all(&dir).expect("node dir");
        Node {
            ip: ip.parse().expect("ip"),
            dir,
        }
    }

    fn redis_pid(&self) -> PathBuf {
        self.dir.join("redis.pid")
    }

    fn sentinel_pid(&self) -> PathBuf {
        self.dir.join("sentinel.pid")
    }

    /// redis.conf: no persistence (a restarted master comes back empty), replicas announce
    /// their own loopback address.
    fn redis_conf(&self, port: u16, replica_of: Option<IpAddr>) -> PathBuf {
        let mut c = format!(
            "bind {ip}\nbind-source-addr {ip}\nport {port}\nprotected-mode no\ndaemonize yes\n\
             pidfile {pid}\ndir {dir}\nlogfile {dir}/redis.log\nsave \"\"\nappendonly no\n\
             requirepass {PASS}\nmasterauth {PASS}\nreplica-announce-ip {ip}\n",
            ip = self.ip,
            pid = self.redis_pid().display(),
            dir = self.dir.display(),
        );
        if let Some(m) = replica_of {
            c.push_str(&format!("replicaof {m} {port}\n"));
        }
        let p = self.dir.join("redis.conf");
        std::fs::write(&p, c).expect("redis.conf");
        p
    }

    /// sentinel.conf monitoring `master`, quorum 2, a 1 s down-after.
    fn sentinel_conf(&self, port: u16, redis_port: u16, master: IpAddr) -> PathBuf {
        let c = format!(
            "bind {ip}\nport {port}\nprotected-mode no\ndaemonize yes\npidfile {pid}\n\
             dir {dir}\nlogfile {dir}/sentinel.log\nsentinel announce-ip {ip}\n\
             requirepass {SENTINEL_PASS}\nsentinel sentinel-pass {SENTINEL_PASS}\n\
             sentinel monitor kbz {master} {redis_port} 2\nsentinel auth-pass kbz {PASS}\n\
             sentinel down-after-milliseconds kbz 1000\nsentinel failover-timeout kbz 4000\n",
            ip = self.ip,
            pid = self.sentinel_pid().display(),
            dir = self.dir.display(),
        );
        let p = self.dir.join("sentinel.conf");
        std::fs::write(&p, c).expect("sentinel.conf");
        p
    }

    fn endpoint(&self, port: u16, pass: &str) -> Endpoint {
        Endpoint {
            ip: self.ip,
            port,
            password: Secret::new(pass),
            timeout: Duration::from_millis(800),
        }
    }

    /// The "host": its up-check port (what heal_all probes before a power-on) is its Redis.
    fn member(&self, redis_port: u16) -> Member {
        let exec: Arc<dyn Executor> = Arc::new(LocalExecutor::new());
        let mut host = Host::new(
            &format!("r{}", self.ip.to_string().rsplit('.').next().unwrap_or("x")),
            self.ip,
            &[Role::Redis],
        );
        host.ssh_port = redis_port;
        Member { host, exec }
    }
}

async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let since = Instant::now();
    while !f().await {
        assert!(since.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writers_reconnect_and_the_checker_finds_writes_a_restarted_master_lost() {
    require_redis();
    let dir = tempfile::tempdir().expect("tmp");
    let (m, r) = (
        Node::new(dir.path(), "127.0.0.41"),
        Node::new(dir.path(), "127.0.0.42"),
    );
    let port = free_port(&[m.ip, r.ip]);
    let mut d = Daemons::new();
    let mconf = m.redis_conf(port, None);
    d.start("redis-server", &mconf, &m.redis_pid());
    d.start(
        "redis-server",
        &r.redis_conf(port, Some(m.ip)),
        &r.redis_pid(),
    );
    let (me, re) = (m.endpoint(port, PASS), r.endpoint(port, PASS));
    until("the replica's link", Duration::from_secs(20), || async {
        client::replication(&re).await.is_ok_and(|x| x.link_up)
    })
    .await;
    assert_eq!(client::is_master(&me).await, Some(true));
    assert_eq!(client::is_master(&re).await, Some(false));

    let writers: Vec<Box<dyn Writer>> = (0..3)
        .map(|w| Box::new(RedisWriter::new(&me, w)) as Box<dyn Writer>)
        .collect();
    let load = Workload::start(writers);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_kill = load.acked();
    assert!(before_kill > 0, "no write acknowledged");
    // The master dies and comes back without its data.
    kill(&m.redis_pid());
    let killed_at = load.started().elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.start("redis-server", &mconf, &m.redis_pid());
    let restarted_at = load.started().elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let tally = load.stop().await;

    // Every acknowledgement is recorded with its time; the writers came back by themselves.
    assert!(tally.acks.windows(2).all(|w| w[0].at <= w[1].at));
    let after = tally.acks.iter().filter(|a| a.at > restarted_at).count();
    assert!(after > 0, "no write after the restart: {:?}", tally.errors);
    assert!(!tally.errors.is_empty(), "the kill caused no failed write");
    let ids: std::collections::HashSet<i64> = tally.acks.iter().map(|a| a.id).collect();
    assert_eq!(ids.len(), tally.acks.len(), "ids are unique");

    // The checker: exactly the writes acknowledged before the kill are gone.
    let present = rd::read_ids(&me).await.expect("read master");
    let v = verdict(&tally, &present);
    let lost = kbz_faults::lost_ids(&tally, &present);
    let acked_before: Vec<i64> = tally
        .acks
        .iter()
        .filter(|a| a.at <= killed_at)
        .map(|a| a.id)
        .collect();
    assert_eq!(v.lost as usize, lost.len());
    assert!(
        v.lost as usize >= acked_before.len().min(before_kill),
        "{v:?}"
    );
    for id in &acked_before {
        assert!(
            lost.contains(id),
            "{id} acknowledged before the kill is not reported lost"
        );
    }
    for a in tally.acks.iter().filter(|a| a.at > restarted_at) {
        assert!(
            !lost.contains(&a.id),
            "{} written after the restart is reported lost",
            a.id
        );
    }
    // The replica resynced from the empty master: its own copy lost the same writes.
    until(
        "the replica's copy matches",
        Duration::from_secs(20),
        || async {
            rd::read_ids(&re)
                .await
                .is_ok_and(|ids| verdict(&tally, &ids).lost == v.lost)
        },
    )
    .await;

    // The scratch keys go, and nothing else is touched.
    let mut c = me.connect().await.expect("connect");
    let _: () = redis::cmd("SET")
        .arg("not-kbz")
        .arg("1")
        .query_async(&mut c)
        .await
        .expect("set");
    rd::delete_scratch(&me).await.expect("delete");
    assert_eq!(rd::read_ids(&me).await.expect("read"), Vec::<i64>::new());
    let other: Option<String> = redis::cmd("GET")
        .arg("not-kbz")
        .query_async(&mut c)
        .await
        .expect("get");
    assert_eq!(other.as_deref(), Some("1"));
    assert!(PREFIX.ends_with(':'));
}

/// A forwarder on `listen` to the Redis master every Sentinel agrees on, as HAProxy's
/// `role:master` check does on the real VIP; refreshed every 100 ms.
async fn vip_forwarder(
    listen: std::net::SocketAddr,
    sentinels: Vec<Endpoint>,
    redis_port: u16,
) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .expect("bind vip");
    let current = Arc::new(std::sync::Mutex::new(None::<IpAddr>));
    let c2 = current.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(m) = client::agreed_master(&sentinels, 1).await {
                if let Ok(mut g) = c2.lock() {
                    *g = Some(m);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = l.accept().await else {
                continue;
            };
            let to = current.lock().ok().and_then(|g| *g);
            tokio::spawn(async move {
                let Some(ip) = to else { return };
                if let Ok(mut out) = tokio::net::TcpStream::connect((ip, redis_port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_master_crash_runs_for_real_against_sentinels_on_loopback() {
    require_redis();
    let dir = tempfile::tempdir().expect("tmp");
    let nodes: Vec<Node> = ["127.0.0.51", "127.0.0.52", "127.0.0.53"]
        .iter()
        .map(|ip| Node::new(dir.path(), ip))
        .collect();
    let ips: Vec<IpAddr> = nodes.iter().map(|n| n.ip).collect();
    let vip: IpAddr = "127.0.0.50".parse().expect("ip");
    let port = free_port(&[ips[0], ips[1], ips[2], vip]);
    let sport = loop {
        let p = free_port(&ips);
        if p != port {
            break p;
        }
    };
    let mut d = Daemons::new();
    let master = nodes[0].ip;
    for (i, n) in nodes.iter().enumerate() {
        let conf = n.redis_conf(port, (i > 0).then_some(master));
        d.start("redis-server", &conf, &n.redis_pid());
    }
    for n in &nodes {
        let conf = n.sentinel_conf(sport, port, master);
        d.start("redis-sentinel", &conf, &n.sentinel_pid());
    }
    let sentinels: Vec<Endpoint> = nodes
        .iter()
        .map(|n| n.endpoint(sport, SENTINEL_PASS))
        .collect();
    let _fwd = vip_forwarder((vip, port).into(), sentinels.clone(), port).await;

    let members: Vec<Member> = nodes.iter().map(|n| n.member(port)).collect();
    let rt = RedisTarget {
        members: members.clone(),
        vip: Endpoint {
            ip: vip,
            port,
            password: Secret::new(PASS),
            timeout: Duration::from_millis(800),
        },
        redis_port: port,
        sentinel_port: sport,
        sentinel_password: Secret::new(SENTINEL_PASS),
    };
    // The power commands: SIGKILL of the victim's Redis by its pid, and its restart (empty).
    let off = format!(
        "kill -9 \"$(cat {root}/{{ip}}/redis.pid)\"",
        root = dir.path().display()
    );
    let on = format!(
        "redis-server {root}/{{ip}}/redis.conf",
        root = dir.path().display()
    );
    let target = Target {
        members: Vec::new(),
        pg: PgTarget {
            addr: vip,
            port: 1,
            user: "postgres".into(),
            password: Secret::new(""),
            dbname: "postgres".into(),
            timeout: Duration::from_secs(1),
        },
        redis: Some(rt.clone()),
        lbs: Vec::new(),
        power: Some(HostCommands { off, on }),
        isolate: None,
        writers: 3,
    };
    let s = Scenario::named("redis-master-crash").expect("scenario");
    // Sentinels find each other and the replicas within a few seconds.
    let svc = target.service(&s).expect("service");
    let leader = kbz_faults::wait_healthy(svc.as_ref(), Duration::from_secs(60), 2)
        .await
        .expect("healthy before the fault");
    assert_eq!(leader, members[0].host.hostname);

    let timing = Timing {
        before: Duration::from_secs(1),
        fault: Duration::from_secs(6),
        after: Duration::from_secs(1),
        healthy_within: Duration::from_secs(60),
        stable_samples: 2,
    };
    let r = kbz_faults::run_once(&s, &target, &timing, 1).await;
    assert_eq!(r.error, None, "{r:#?}");
    assert_eq!(r.service, "redis");
    assert_eq!(r.victim, members[0].host.hostname, "{r:#?}");
    assert_ne!(r.leader_after, r.victim, "{r:#?}");
    // Sentinel declares the master down after 1 s and promotes within a few more.
    let nl = r
        .new_leader_secs
        .expect("a new master as every surviving Sentinel reports it");
    assert!(nl > 0.5 && nl < 15.0, "{r:#?}");
    assert!(r.vip.acked > 0 && r.writes_resumed_secs.is_some(), "{r:#?}");
    assert_eq!(r.lost_on_member.len(), 3, "every member read back: {r:#?}");
    // Whatever was lost was acknowledged right around the crash, as async replication allows.
    let breaches = kbz_faults::evaluate(&s, &Default::default(), &r);
    assert!(
        breaches.iter().all(|b| b.figure != "lost_outside_window"),
        "{breaches:?} {r:#?}"
    );
    assert!(
        breaches.iter().all(|b| b.figure != "write_gap_secs"),
        "{breaches:?}"
    );
    assert_eq!(r.replicas_streaming, 2, "{r:#?}");

    // The end of every kbz-failover run: nothing left to heal, no scratch key left anywhere.
    assert!(kbz_faults::cleanup::heal_all(&s, &target).await.is_empty());
    kbz_faults::cleanup::drop_scratch(&s, &target)
        .await
        .expect("drop scratch");
    for n in &nodes {
        let e = n.endpoint(port, PASS);
        until(
            "scratch keys gone on every member",
            Duration::from_secs(10),
            || async { rd::read_ids(&e).await.is_ok_and(|v| v.is_empty()) },
        )
        .await;
    }
}
