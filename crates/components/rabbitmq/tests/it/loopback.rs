//! Three real RabbitMQ 3.10 nodes on loopback (127.0.7.1-3 stand in for three hosts), each
//! started as a child process from the files kbz renders (rabbitmq.conf with the
//! classic_config peers, rabbitmq-env.conf, enabled_plugins, the cookie), with a private
//! epmd. rabbit@127.0.7.3 first starts alone and is stopped, then .1 and .2 start (.2 joins
//! .1 through classic_config), then .3 comes back alone: kbz's own cluster step, through
//! LocalExecutor, must join it, create the vhost and users and delete guest, and change
//! nothing on a second run. Then AMQP as the application user: a queue declared without
//! arguments is a quorum queue, 200 messages published with publisher confirms through one
//! node are all consumed through another; the health checks pass; with one node killed the
//! rolling gate (`check_if_node_is_quorum_critical`) refuses (E036) and passes again once it
//! is back. Fails with the `apt-get install` line when rabbitmq-server or epmd is missing.

use kbz_core::component::HostExec;
use kbz_core::health::HealthRaw;
use kbz_core::{
    ClusterChangeKind, Cmd, Config, Context, Executor, Host, Inventory, Role, Secret, Secrets,
};
use kbz_errors::{Code, HasCode};
use kbz_exec::LocalExecutor;
use kbz_rabbitmq::layout::{self, Layout};
use kbz_rabbitmq::{cluster, health, observe, render, SECRET_ADMIN, SECRET_APP, SECRET_COOKIE};
use kbz_testkit::{free_port_on, Daemons};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const APP_PASSWORD: &str = "a'p\"p $HOME \\ ;`id` #1";

fn require_rabbitmq() {
    kbz_testkit::require_tool("epmd", "erlang-base");
    kbz_testkit::require_tool("rabbitmq-server", "rabbitmq-server");
    assert!(
        Path::new(SERVER).exists(),
        "{SERVER} is missing: sudo apt-get install rabbitmq-server (then `systemctl disable --now rabbitmq-server`)"
    );
}

fn write(path: &str, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = Path::new(path);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    // The cookie is 0400: make a rewrite possible.
    if p.exists() {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    std::fs::write(p, content).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Three consecutive ports (AMQP, management, Prometheus) free on every node, and none of
/// `avoid`.
fn free_base(ips: &[IpAddr], avoid: &[u16]) -> u16 {
    for _ in 0..50 {
        let p = free_port_on(ips, avoid);
        if p < 60000
            && (1..3).all(|i| !avoid.contains(&(p + i)))
            && (1..3).all(|i| {
                ips.iter()
                    .all(|ip| std::net::TcpListener::bind((*ip, p + i)).is_ok())
            })
        {
            return p;
        }
    }
    panic!("no three free consecutive ports on {ips:?}");
}

struct Fleet {
    dir: tempfile::TempDir,
    layout: Layout,
    hosts: Vec<Host>,
    epmd_port: u16,
    daemons: Daemons,
}

impl Fleet {
    fn start(&mut self, i: usize) {
        let h = &self.hosts[i];
        let l = &self.layout;
        let log = std::fs::File::create(self.dir.path().join(format!("{}.out", h.hostname)))
            .expect("log");
        let child = Command::new(SERVER)
            .env("HOME", l.path(h, layout::DATA_DIR))
            .env("RABBITMQ_CONF_ENV_FILE", l.path(h, layout::ENV_CONF))
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            // As under systemd: the script execs the VM, so the child's pid is the node's.
            .env("RUNNING_UNDER_SYSTEMD", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn rabbitmq-server");
        self.daemons.add(h.hostname.clone(), child);
    }

    fn kill(&mut self, i: usize) {
        self.daemons.kill(&self.hosts[i].hostname.clone());
    }

    fn execs(&self) -> Vec<HostExec> {
        self.hosts
            .iter()
            .map(|h| HostExec {
                host: h.clone(),
                exec: Arc::new(LocalExecutor::new()) as Arc<dyn Executor>,
            })
            .collect()
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        for h in &self.hosts {
            let t = std::fs::read_to_string(self.dir.path().join(format!("{}.out", h.hostname)))
                .unwrap_or_default();
            let node_log = std::fs::read_to_string(format!(
                "{}/{}.log",
                self.layout.path(h, "/var/log/rabbitmq"),
                self.layout.node(h)
            ))
            .unwrap_or_default();
            for (what, t) in [("stdout", &t), ("log", &node_log)] {
                let lines: Vec<&str> = t.lines().collect();
                s.push_str(&format!(
                    "--- {} {what}\n{}\n",
                    h.hostname,
                    lines[lines.len().saturating_sub(25)..].join("\n")
                ));
            }
        }
        s
    }
}

async fn sh(script: &str) -> (i32, String) {
    let out = LocalExecutor::new()
        .run(&Cmd::new(script))
        .await
        .expect("run");
    (
        out.status,
        format!("{}{}", out.stdout_str(), out.stderr_str()),
    )
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_form_a_cluster_with_kbz_and_serve_quorum_queues() {
    require_rabbitmq();
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts: Vec<Host> = ["127.0.7.1", "127.0.7.2", "127.0.7.3"]
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            Host::new(
                &format!("r{}", i + 1),
                ip.parse().expect("ip"),
                &[Role::Rabbitmq],
            )
        })
        .collect();
    let ips: Vec<IpAddr> = hosts.iter().map(|h| h.ip).collect();
    let base = free_base(&ips, &[]);
    // Distribution: three more consecutive ports, one per node (base - 1 plus the last
    // octet of its address).
    let dist = free_base(&ips, &[base, base + 1, base + 2]);
    let avoid = [base, base + 1, base + 2, dist, dist + 1, dist + 2];
    let epmd_port = free_port_on(&ips, &avoid);
    let l = Layout::loopback(&dir.path().to_string_lossy(), base, dist - 1, epmd_port);

    let mut cfg = Config::default();
    cfg.cluster.name = "loopback".into();
    cfg.timeouts.readiness = 120;
    let mut secrets = Secrets::in_memory();
    secrets.set(
        SECRET_COOKIE,
        Secret::new("LoopbackCookie0123456789abcdefXYZ"),
    );
    secrets.set(SECRET_ADMIN, Secret::new("adm'in \"pw\" $(id) \\ x"));
    secrets.set(SECRET_APP, Secret::new(APP_PASSWORD));
    let inv = Inventory {
        path: "loopback.tsv".into(),
        hosts: hosts.clone(),
    };
    let ctx = Context::new(inv, cfg, secrets);

    for h in &hosts {
        for d in ["/var/lib/rabbitmq/mnesia", "/var/log/rabbitmq"] {
            std::fs::create_dir_all(l.path(h, d)).expect("mkdir");
        }
        for f in render::files(&ctx, h, &l).expect("render") {
            write(&f.path, &f.content, f.mode);
        }
    }
    let mut daemons = Daemons::new();
    // epmd of its own, on the nodes' addresses (and loopback) and a free port.
    let addrs: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
    daemons.add(
        "epmd",
        Command::new("epmd")
            .args([
                "-port",
                &epmd_port.to_string(),
                "-address",
                &addrs.join(","),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("epmd"),
    );
    let mut fleet = Fleet {
        dir,
        layout: l.clone(),
        hosts: hosts.clone(),
        epmd_port,
        daemons,
    };
    let hx = fleet.execs();

    // r3 starts first, alone (nobody to discover), and stops: it is a cluster of its own.
    fleet.start(2);
    cluster::wait_running(&ctx, &hx[2], &l)
        .await
        .unwrap_or_else(|e| panic!("r3: {e}\n{}", fleet.log_tail()));
    fleet.kill(2);
    // r1 starts alone; r2 finds r1 through classic_config and joins it on its first start.
    fleet.start(0);
    cluster::wait_running(&ctx, &hx[0], &l)
        .await
        .unwrap_or_else(|e| panic!("r1: {e}\n{}", fleet.log_tail()));
    fleet.start(1);
    cluster::wait_running(&ctx, &hx[1], &l)
        .await
        .unwrap_or_else(|e| panic!("r2: {e}\n{}", fleet.log_tail()));
    fleet.start(2);

    let changes = cluster::converge(&ctx, &hx, &l)
        .await
        .unwrap_or_else(|e| panic!("converge: {e}\n{}", fleet.log_tail()));
    let joins: Vec<&str> = changes
        .iter()
        .filter(|c| c.kind == ClusterChangeKind::Join)
        .map(|c| c.detail.as_str())
        .collect();
    assert_eq!(
        joins,
        ["r3@127.0.7.3 joined r1@127.0.7.1 (it had started alone)"],
        "{changes:#?}"
    );
    let created: Vec<&str> = changes
        .iter()
        .filter(|c| c.kind == ClusterChangeKind::Create)
        .map(|c| c.detail.as_str())
        .collect();
    assert!(created.contains(&"user guest deleted"), "{created:?}");
    assert!(created.contains(&"vhost app added (default queue type quorum)"));
    // One observation per node (one `rabbitmqctl eval` each) sees the whole cluster, kbz's
    // users and vhost, and which passwords log in.
    let obs = cluster::observe_all(&ctx, &hx, &l).await.expect("observe");
    for (v, o) in cluster::views(&hx, &l, &obs).iter().zip(&obs) {
        let s = v.status.clone().expect("status");
        assert_eq!(s.running_nodes.len(), 3, "{}: {s:?}", v.host);
        assert_eq!(o.running, Ok(true), "{}", v.host);
        assert_eq!(o.local_alarms, Ok(Vec::new()), "{}", v.host);
        let a = o.access.clone().expect("access");
        assert!(a.users.iter().all(|u| u.user != "guest"), "{a:?}");
        assert!(a
            .vhosts
            .iter()
            .any(|x| x.name == "app" && x.default_queue_type.as_deref() == Some("quorum")));
        assert_eq!(a.app_permissions.len(), 1, "{a:?}");
        assert_eq!(o.authenticated, ["kbz_admin", "app"], "{}", v.host);
    }

    // A second run only reads.
    let again = cluster::converge(&ctx, &hx, &l).await.expect("re-run");
    assert!(again.is_empty(), "{again:#?}");

    // Users as kbz left them, asked the real node.
    let (_, users) = sh(&format!(
        "{}{} -q list_users --formatter json",
        l.cli_env(&hosts[1]),
        l.tool("rabbitmqctl", 60)
    ))
    .await;
    let users = observe::parse_list::<observe::User>(&users).expect("users");
    let names: Vec<&str> = users.iter().map(|u| u.user.as_str()).collect();
    assert!(!names.contains(&"guest"), "{names:?}");
    assert!(
        names.contains(&"kbz_admin") && names.contains(&"app"),
        "{names:?}"
    );

    // AMQP as the application user: a queue declared without x-queue-type, publisher
    // confirms through r1, consumed through r3.
    let uri = |h: &Host| {
        format!(
            "amqp://app:{}@{}:{}/app",
            pct(APP_PASSWORD),
            h.ip,
            l.amqp_port
        )
    };
    let conn = Connection::connect(&uri(&hosts[0]), ConnectionProperties::default())
        .await
        .expect("AMQP connect as app");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        "kbz-loopback",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let (_, qs) = sh(&format!(
        "{}{} -q list_queues -p app name type --formatter json",
        l.cli_env(&hosts[0]),
        l.tool("rabbitmqctl", 60)
    ))
    .await;
    assert!(
        qs.contains("\"name\":\"kbz-loopback\",\"type\":\"quorum\""),
        "a queue declared without arguments in the app vhost: {qs}"
    );
    const N: usize = 200;
    for i in 0..N {
        let confirm = ch
            .basic_publish(
                "",
                "kbz-loopback",
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "message {i} not confirmed: {confirm:?}");
    }
    conn.close(200, "bye").await.expect("close");
    let conn = Connection::connect(&uri(&hosts[2]), ConnectionProperties::default())
        .await
        .expect("AMQP connect to r3");
    let ch = conn.create_channel().await.expect("channel");
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get("kbz-loopback", BasicGetOptions::default())
        .await
        .expect("get")
    {
        got.push(String::from_utf8_lossy(&m.delivery.data).to_string());
        m.delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
    assert_eq!(got.len(), N, "consumed through r3");
    assert_eq!(got[0], "m0");
    assert_eq!(got[N - 1], format!("m{}", N - 1));
    // guest cannot log in, even from loopback.
    let guest = format!("amqp://guest:guest@{}:{}/%2F", hosts[0].ip, l.amqp_port);
    assert!(Connection::connect(&guest, ConnectionProperties::default())
        .await
        .is_err());

    // Health: every check passes on the running cluster.
    let answers = kbz_core::health_run::answers(&hx, "rabbitmq", |h| health::probes(&l, h)).await;
    let checks = health::checks(&ctx, &HealthRaw::new("rabbitmq", &answers), &l);
    assert!(checks.iter().all(|c| c.is_ok()), "{checks:#?}");
    // The rolling gate passes while all three run.
    cluster::before_roll(&ctx, &hx, &l).await.expect("gate");

    // With r3 down, stopping r1 would leave the queue one replica of three: the gate refuses.
    fleet.kill(2);
    let mut short = (*ctx.config).clone();
    short.timeouts.readiness = 6;
    let quick = Context::new((*ctx.inventory).clone(), short, (*ctx.secrets).clone());
    let e = cluster::before_roll(&quick, &hx[..1], &l)
        .await
        .expect_err("quorum critical");
    assert_eq!(e.code(), Code::E036, "{e}");
    let answers = kbz_core::health_run::answers(&hx, "rabbitmq", |h| health::probes(&l, h)).await;
    let checks = health::checks(&ctx, &HealthRaw::new("rabbitmq", &answers), &l);
    let bad: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| !c.is_ok())
        .map(|c| (c.host.as_str(), c.check.as_str()))
        .collect();
    assert!(bad.contains(&("r3", "rabbitmq node")), "{bad:?}");
    assert!(bad.contains(&("r1", "cluster membership")), "{bad:?}");
    assert!(
        !bad.iter().any(|(_, c)| *c == "quorum"),
        "two of three keep the quorum"
    );
    // r3 comes back: host_ready waits until nothing is quorum critical.
    fleet.start(2);
    cluster::host_ready(&ctx, &hx[2], &l, &hosts)
        .await
        .unwrap_or_else(|e| panic!("r3 back: {e}\n{}", fleet.log_tail()));
    cluster::before_roll(&ctx, &hx, &l)
        .await
        .expect("gate after");
    let (rc, _) = sh(&format!(
        "{}{} -q -n r1@127.0.7.1 check_if_node_is_quorum_critical",
        l.cli_env(&hosts[0]),
        l.tool("rabbitmq-diagnostics", 60)
    ))
    .await;
    assert_eq!(rc, 0);
    // The secrets never reached a command line or the nodes' logs.
    let logs = fleet.log_tail();
    for n in [SECRET_ADMIN, SECRET_APP] {
        let s = ctx.secret(n).expect("secret");
        assert!(!logs.contains(s.expose()), "{n} in a log");
    }
}
