//! kbz-failover's library half: `list` and `run SCENARIO`. A run refuses to start unless
//! kbz-health's checks ([`crate::health::check`]) say healthy, asks for confirmation unless
//! `--yes`, builds the kbz-faults [`Target`] from the session (members over SSH, writes
//! through the PostgreSQL VIP, `[failover]` power commands), runs the scenario `--runs`
//! times, heals every fault of the scenario and drops the scratch table at the end (also on
//! Ctrl-C), judges every run against its `[failover]` budget ([`kbz_faults::evaluate`]),
//! prints a table or JSON, notifies (`Event::failover_result`) and maps the outcome to an
//! exit code: 0 inside budget, 1 a breach (E071/E072) or a failed run, 2 an unhealthy
//! cluster (nothing injected), 3 unreachable, 64 bad input. With `[ssh] jump_host` set, the
//! workload and the service checks go through tunnels of the bastion ([`bastion`]).

pub mod bastion;
pub mod output;

use kbz_core::{Context, Role, Secret};
use kbz_errors::{Code, Diagnostic, HasCode};
use kbz_faults::{
    Breach, HostCommands, Member, PgTarget, RedisTarget, RunReport, Scenario, Summary, Target,
};
use serde::Serialize;
use std::time::Duration;

use crate::session::{self, prepare, warn_failed};
use crate::{connect, exit, runtime, ui, Common, Failure};

const BIN: &str = "kbz-failover";

/// `kbz-failover run` options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario's name.
    pub scenario: String,
    /// How many runs.
    pub runs: u32,
    /// Seconds the fault lasts.
    pub duration: u64,
    /// Concurrent writers.
    pub writers: usize,
    /// No confirmation question.
    pub yes: bool,
}

/// The outcome of `kbz-failover run`, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The cluster.
    pub cluster: String,
    /// The scenario.
    pub scenario: String,
    /// Its budget.
    pub budget: kbz_faults::Budget,
    /// Every run's figures.
    pub runs: Vec<RunReport>,
    /// The figures over every run.
    pub summary: Summary,
    /// Every figure outside its budget.
    pub breaches: Vec<Breach>,
    /// Runs that ended in an error (with its E-code).
    pub errors: Vec<String>,
    /// Faults that could not be undone at the end (host: error); empty when the fleet is as
    /// before.
    pub not_healed: Vec<String>,
    /// Whether the run was interrupted (Ctrl-C).
    pub interrupted: bool,
    /// Every run completed inside its budget.
    pub passed: bool,
    /// The bastion (`user@host:port`) the workload and the service checks went through;
    /// `None`: directly.
    pub via: Option<String>,
}

/// An unknown scenario: E010 with the nearest name.
pub fn scenario(name: &str) -> Result<Scenario, Failure> {
    Scenario::named(name).map_err(|_| {
        let known: Vec<String> = Scenario::all().into_iter().map(|s| s.name).collect();
        let mut d = Diagnostic::new(
            Code::E010,
            format!("unknown scenario `{name}`; known: {}", known.join(", ")),
        );
        d = match Scenario::nearest(name) {
            Some(n) => d.hint(format!(
                "did you mean `{n}`? `kbz-failover list` shows every scenario"
            )),
            None => d.hint("`kbz-failover list` shows every scenario"),
        };
        Failure::input(vec![d])
    })
}

/// `kbz-failover list`: every scenario with its fault and budget.
pub fn list(c: &Common) -> u8 {
    let cfg = match crate::inputs::load(c) {
        Ok(i) => i.config.failover,
        // Without an inventory the defaults are shown.
        Err(_) if c.inventory.is_none() && c.config.is_none() => Default::default(),
        Err(d) => return Failure::input(d).report(c.json),
    };
    crate::out!("{}", output::list(&Scenario::all(), &cfg, c.json));
    exit::OK
}

/// What scenario `s` needs from the inputs, checked before anything connects: the
/// PostgreSQL and VIP scenarios write through the PostgreSQL VIP (`[vips] postgres`, E008)
/// and need a primary and a replica (2+ postgres hosts, E010); the Redis scenarios need
/// `[vips] redis` and redis hosts (E008), and no PostgreSQL at all; the Kubernetes scenario
/// needs 3+ `k8s-master` hosts (E010: etcd keeps its quorum with one down) and `[vips]
/// k8s_api` (E008); the RabbitMQ scenario `[vips] rabbitmq` (E008) and 3+ rabbitmq hosts
/// (E010).
pub fn needs(s: &Scenario, ctx: &Context) -> Result<(), Failure> {
    let count = |role: Role| {
        ctx.inventory
            .hosts
            .iter()
            .filter(|h| h.roles.contains(&role))
            .count()
    };
    match s.service() {
        kbz_faults::Service::Postgres => {
            if !ctx.config.vips.contains_key("postgres") {
                return Err(Failure::input(vec![Diagnostic::new(
                    Code::E008,
                    format!("scenario {} writes through the PostgreSQL VIP: kbz.toml has no [vips] postgres", s.name),
                )
                .hint("set it under [vips], e.g. `postgres = \"10.0.0.100\"`; on a fleet without PostgreSQL run a Redis scenario (`kbz-failover list`)")]));
            }
            let n = count(Role::Postgres);
            if n < 2 {
                return Err(Failure::input(vec![Diagnostic::new(
                    Code::E010,
                    format!(
                        "the inventory has {n} postgres host(s); a failover needs a primary and a replica"
                    ),
                )
                .hint("give the postgres role to 3 hosts in servers.tsv")]));
            }
        }
        kbz_faults::Service::Redis => {
            if !ctx.config.vips.contains_key("redis") || count(Role::Redis) == 0 {
                return Err(redis_missing(&s.name));
            }
        }
        kbz_faults::Service::Mariadb => {
            if !ctx.config.vips.contains_key("mariadb") || count(Role::Mariadb) == 0 {
                return Err(galera_missing(&s.name));
            }
            let n = count(Role::Mariadb);
            if n < kbz_faults::MIN_GALERA_NODES {
                return Err(Failure::input(vec![Diagnostic::new(
                    Code::E010,
                    format!(
                        "scenario {} crashes a Galera node: the inventory has {n} mariadb host(s), it needs {} or more (two keep a Primary component with one down)",
                        s.name,
                        kbz_faults::MIN_GALERA_NODES
                    ),
                )
                .hint("give the mariadb role to 3 hosts in servers.tsv")]));
            }
        }
        kbz_faults::Service::Rabbitmq => {
            let n = count(Role::Rabbitmq);
            if !ctx.config.vips.contains_key("rabbitmq") {
                return Err(Failure::input(vec![Diagnostic::new(
                    Code::E008,
                    format!("scenario {} publishes through the RabbitMQ VIP: kbz.toml has no [vips] rabbitmq", s.name),
                )
                .hint("set it under [vips], e.g. `rabbitmq = \"10.0.0.102\"`")]));
            }
            if n < 3 {
                return Err(Failure::input(vec![Diagnostic::new(
                    Code::E010,
                    format!(
                        "scenario {} crashes a RabbitMQ node: the inventory has {n} rabbitmq host(s), it needs 3 or more (the quorum queue keeps its majority with one down)",
                        s.name
                    ),
                )
                .hint("give the rabbitmq role to 3 hosts in servers.tsv and install module 7")]));
            }
        }
        kbz_faults::Service::Kubernetes => {
            let n = count(Role::K8sMaster);
            if n < kbz_faults::MIN_K8S_MASTERS {
                return Err(Failure::input(vec![Diagnostic::new(
                    Code::E010,
                    format!(
                        "scenario {} crashes a Kubernetes master: the inventory has {n} k8s-master host(s), it needs {} or more (etcd keeps its quorum with one of them down)",
                        s.name,
                        kbz_faults::MIN_K8S_MASTERS
                    ),
                )
                .hint("give the k8s-master role to 3 hosts in servers.tsv and install module 10; `kbz-failover list` shows the scenarios of other services")]));
            }
            if !ctx.config.vips.contains_key("k8s_api") {
                return Err(Failure::input(vec![Diagnostic::new(
                    Code::E008,
                    format!("scenario {} probes the Kubernetes API through its VIP: kbz.toml has no [vips] k8s_api", s.name),
                )
                .hint("set it under [vips], e.g. `k8s_api = \"10.0.0.104\"`")]));
            }
        }
    }
    Ok(())
}

fn redis_missing(scenario: &str) -> Failure {
    Failure::input(vec![Diagnostic::new(
        Code::E008,
        format!("scenario {scenario} writes through the Redis VIP: kbz.toml has no [vips] redis or the inventory no redis host"),
    )
    .hint("set `redis = \"10.0.0.101\"` under [vips] and give the redis role to 3 hosts")])
}

/// The kbz-faults target of the session: every PostgreSQL, Redis and lb host over SSH (one
/// session per host), PostgreSQL writes through its VIP as the application role into its
/// database (`[postgres] app_user` / `app_database`; the superuser is local-only) (when `[vips]
/// postgres` is set and the inventory has postgres hosts), Redis writes through its VIP (when
/// `[vips] redis` is set and it has Redis hosts), RabbitMQ publishes through its VIP as the
/// application user (when `[vips] rabbitmq` is set and it has rabbitmq hosts), power commands from `[failover]`, every
/// service connection through `routes` (the bastion's tunnels; empty: directly).
async fn target(
    ctx: &Context,
    connector: &dyn kbz_core::executor::Connector,
    writers: usize,
    routes: &kbz_core::net::Routes,
) -> Result<Target, Failure> {
    let mut connected: Vec<Member> = Vec::new();
    let with_role = |role: Role| {
        ctx.inventory
            .hosts
            .iter()
            .filter(move |h| h.roles.contains(&role))
            .cloned()
            .collect::<Vec<_>>()
    };
    let (pg_hosts, redis_hosts, k8s_hosts, galera_hosts, lb_hosts) = (
        with_role(Role::Postgres),
        with_role(Role::Redis),
        with_role(Role::K8sMaster),
        with_role(Role::Mariadb),
        with_role(Role::Lb),
    );
    let mq_hosts = with_role(Role::Rabbitmq);
    let members = members_of(connector, &mut connected, &pg_hosts).await?;
    let secret = |name: &str| {
        ctx.secrets
            .get(name)
            .map(|s| Secret::new(s.expose()))
            .unwrap_or_else(|| Secret::new(""))
    };
    let pg = match ctx.config.vips.get("postgres").copied() {
        Some(vip) if !members.is_empty() => Some(PgTarget {
            addr: vip,
            port: kbz_postgres::PG_PORT,
            user: ctx.config.postgres.app_user.clone(),
            password: secret(kbz_postgres::APP_PASSWORD),
            dbname: ctx.config.postgres.app_database.clone(),
            timeout: Duration::from_secs(2),
            tls_ca: ctx.tls().ok().flatten().map(|p| p.ca_pem().to_string()),
            routes: routes.clone(),
        }),
        _ => None,
    };
    let redis = match ctx.config.vips.get("redis").copied() {
        Some(rvip) if !redis_hosts.is_empty() => Some(RedisTarget {
            members: members_of(connector, &mut connected, &redis_hosts).await?,
            vip: kbz_redis::client::Endpoint {
                ip: rvip,
                port: kbz_haproxy::REDIS_PORT,
                password: secret(kbz_redis::SECRET_REDIS),
                timeout: Duration::from_secs(2),
                routes: routes.clone(),
            },
            redis_port: kbz_redis::Layout::debian().redis_port,
            sentinel_port: kbz_redis::Layout::debian().sentinel_port,
            sentinel_password: secret(kbz_redis::SECRET_SENTINEL),
        }),
        _ => None,
    };
    let k8s = match ctx.config.vips.get("k8s_api").copied() {
        Some(vip) if !k8s_hosts.is_empty() => Some(kbz_faults::K8sTarget {
            members: members_of(connector, &mut connected, &k8s_hosts).await?,
            vip,
            port: kbz_kubernetes::API_PORT,
            flavor: kbz_kubernetes::Flavor::of(ctx),
            timeout: Duration::from_secs(2),
            routes: routes.clone(),
        }),
        _ => None,
    };
    let galera = match ctx.config.vips.get("mariadb").copied() {
        Some(vip) if !galera_hosts.is_empty() => Some(kbz_faults::GaleraTarget {
            members: members_of(connector, &mut connected, &galera_hosts).await?,
            vip,
            port: kbz_haproxy::MARIADB_PORT,
            user: ctx.config.mariadb.app_user.clone(),
            password: secret(kbz_mariadb::SECRET_APP),
            database: ctx.config.mariadb.app_database.clone(),
            timeout: Duration::from_secs(2),
            routes: routes.clone(),
        }),
        _ => None,
    };
    let rabbitmq = match ctx.config.vips.get("rabbitmq").copied() {
        Some(vip) if !mq_hosts.is_empty() => Some(kbz_faults::RabbitTarget {
            members: members_of(connector, &mut connected, &mq_hosts).await?,
            vip,
            port: kbz_haproxy::AMQP_PORT,
            user: ctx.config.rabbitmq.app_user.clone(),
            password: secret(kbz_rabbitmq::SECRET_APP),
            vhost: ctx.config.rabbitmq.vhost.clone(),
            timeout: Duration::from_secs(5),
            routes: routes.clone(),
        }),
        _ => None,
    };
    let lbs = members_of(connector, &mut connected, &lb_hosts).await?;
    let f = &ctx.config.failover;
    let power = match (&f.power_off, &f.power_on) {
        (Some(off), Some(on)) => Some(HostCommands {
            off: off.clone(),
            on: on.clone(),
        }),
        _ => None,
    };
    Ok(Target {
        members,
        pg,
        redis,
        k8s,
        galera,
        rabbitmq,
        lbs,
        power,
        isolate: None,
        writers,
        routes: routes.clone(),
    })
}

/// The members on `hosts`, each connected once (sessions shared through `connected`).
async fn members_of(
    connector: &dyn kbz_core::executor::Connector,
    connected: &mut Vec<Member>,
    hosts: &[kbz_core::Host],
) -> Result<Vec<Member>, Failure> {
    let mut out = Vec::new();
    for h in hosts {
        if let Some(m) = connected.iter().find(|m| m.host.hostname == h.hostname) {
            out.push(m.clone());
            continue;
        }
        let exec = connector
            .connect(h)
            .await
            .map_err(|e| Failure::new(e.to_diagnostic(), exit::UNREACHABLE))?;
        let m = Member {
            host: h.clone(),
            exec,
        };
        connected.push(m.clone());
        out.push(m);
    }
    Ok(out)
}

/// E037 when nothing answers PostgreSQL on the VIP (checked before any fault).
async fn vip_answers(t: &Target, scenario: &Scenario) -> Result<(), Failure> {
    let pg = t.postgres(scenario).map_err(|e| {
        Failure::input(vec![Diagnostic::new(Code::E008, e.to_string())
            .hint("set [vips] postgres and give the postgres role to 3 hosts")])
    })?;
    match pg.connect().await {
        Ok(_) => Ok(()),
        // 28P01: invalid_password. The VIP answers, the secrets file does not match.
        Err(e) if e.to_string().contains("28P01") => Err(Failure::input(vec![Diagnostic::new(
            Code::E056,
            format!(
                "PostgreSQL on the VIP refused the application role {} (its password is `{}` in the secrets file), nothing was injected: {e}",
                pg.user,
                kbz_postgres::APP_PASSWORD
            ),
        )
        .hint("run kbz-failover with the state directory of the install (`--state-dir`, default .kbz next to the inventory): its secrets.toml has the password")])),
        Err(e) => Err(Failure::new(
            Diagnostic::new(
                Code::E037,
                format!("the PostgreSQL VIP does not answer, nothing was injected: {e}"),
            )
            .hint(format!(
                "check that a load balancer holds it and HAProxy fronts the primary: `kbz-health --component haproxy`, `nc -vz {} {}`",
                pg.addr, pg.port
            )),
            exit::UNREACHABLE,
        )),
    }
}

/// E037 when nothing answers Redis on its VIP, E008 when there is no Redis to fault
/// (checked before any fault).
async fn redis_vip_answers(t: &Target, scenario: &str) -> Result<(), Failure> {
    let Some(r) = &t.redis else {
        return Err(redis_missing(scenario));
    };
    match kbz_redis::client::replication(&r.vip).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason.contains("WRONGPASS") || e.reason.contains("NOAUTH") => {
            Err(Failure::input(vec![Diagnostic::new(
                Code::E056,
                format!("Redis on the VIP refused the password, nothing was injected: {e}"),
            )
            .hint("run kbz-failover with the state directory of the install (`--state-dir`): its secrets.toml has the password")]))
        }
        Err(e) => Err(Failure::new(
            Diagnostic::new(
                Code::E037,
                format!("the Redis VIP does not answer, nothing was injected: {e}"),
            )
            .hint(format!(
                "check that a load balancer holds it and HAProxy fronts the master: `kbz-health --component haproxy`, `nc -vz {} {}`",
                r.vip.ip, r.vip.port
            )),
            exit::UNREACHABLE,
        )),
    }
}

/// E056 when MariaDB on its VIP refuses the application user, E037 when nothing answers
/// there or the cluster is not healthy (checked before any fault).
async fn galera_vip_answers(t: &Target, s: &Scenario) -> Result<(), Failure> {
    let Some(g) = &t.galera else {
        return Err(galera_missing(&s.name));
    };
    match g.node_name(g.vip).await {
        Ok(_) => Ok(()),
        // 1045: access denied. The VIP answers, the secrets file does not match.
        Err(e) if e.to_string().contains("1045") => Err(Failure::input(vec![Diagnostic::new(
            Code::E056,
            format!(
                "MariaDB on the VIP refused the application user {} (its password is `{}` in the secrets file), nothing was injected: {e}",
                g.user,
                kbz_mariadb::SECRET_APP
            ),
        )
        .hint("run kbz-failover with the state directory of the install (`--state-dir`): its secrets.toml has the password")])),
        Err(e) => Err(Failure::new(
            Diagnostic::new(
                Code::E037,
                format!("the MariaDB VIP does not answer, nothing was injected: {e}"),
            )
            .hint(format!(
                "check that a load balancer holds it and HAProxy fronts a Synced node: `kbz-health --component mariadb`, `nc -vz {} {}`",
                g.vip, g.port
            )),
            exit::UNREACHABLE,
        )),
    }
}

fn galera_missing(scenario: &str) -> Failure {
    Failure::input(vec![Diagnostic::new(
        Code::E008,
        format!("scenario {scenario} writes through the MariaDB VIP: kbz.toml has no [vips] mariadb or the inventory no mariadb host"),
    )
    .hint("set `mariadb = \"10.0.0.103\"` under [vips] and give the mariadb role to 3 hosts")])
}

/// E037 when the Kubernetes API does not answer `/readyz` through its VIP with the admin
/// credentials of a master (checked before any fault).
async fn k8s_vip_answers(t: &Target, s: &Scenario) -> Result<(), Failure> {
    let svc = t.service(s).map_err(|e| {
        Failure::input(vec![Diagnostic::new(Code::E010, e.to_string())
            .hint("give the k8s-master role to 3 hosts and set [vips] k8s_api")])
    })?;
    svc.prepare().await.map_err(|e| {
        Failure::new(
            Diagnostic::new(
                Code::E037,
                format!("the Kubernetes API does not answer through its VIP, nothing was injected: {e}"),
            )
            .hint(format!(
                "check that a load balancer holds it and HAProxy fronts the API servers: `kbz-health --component haproxy`, `kubectl --server https://{} get --raw /readyz` on a master",
                svc.vip()
            )),
            exit::UNREACHABLE,
        )
    })
}

/// E037 when RabbitMQ does not take the scratch queue through its VIP with the application
/// user (E056 when it refuses the password), checked before any fault.
async fn rabbitmq_vip_answers(t: &Target, s: &Scenario) -> Result<(), Failure> {
    let svc = t.service(s).map_err(|e| {
        Failure::input(vec![Diagnostic::new(Code::E010, e.to_string())
            .hint("give the rabbitmq role to 3 hosts and set [vips] rabbitmq")])
    })?;
    match svc.prepare().await {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("ACCESS_REFUSED") => Err(Failure::input(vec![Diagnostic::new(
            Code::E056,
            format!("RabbitMQ on the VIP refused the application user (its password is `{}` in the secrets file), nothing was injected: {e}", kbz_rabbitmq::SECRET_APP),
        )
        .hint("run kbz-failover with the state directory of the install (`--state-dir`): its secrets.toml has the password")])),
        Err(e) => Err(Failure::new(
            Diagnostic::new(
                Code::E037,
                format!("RabbitMQ does not answer through its VIP, nothing was injected: {e}"),
            )
            .hint(format!(
                "check that a load balancer holds it and HAProxy fronts the nodes: `kbz-health --component haproxy`, `nc -vz {}`",
                svc.vip().replace(':', " ")
            )),
            exit::UNREACHABLE,
        )),
    }
}

/// `kbz-failover run SCENARIO`.
pub fn run(c: &Common, o: &RunOptions) -> u8 {
    match run_inner(c, o) {
        Ok(code) => code,
        Err(f) => f.report(c.json),
    }
}

fn run_inner(c: &Common, o: &RunOptions) -> Result<u8, Failure> {
    let s = scenario(&o.scenario)?;
    if c.inventory.is_none() {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E010,
            "kbz-failover needs the --inventory of the cluster to fault",
        )
        .hint(
            "kbz-failover run postgres-leader-partition --inventory servers.tsv",
        )]));
    }
    if o.runs == 0 || o.writers == 0 || o.duration == 0 {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E010,
            "--runs, --writers and --duration must be at least 1",
        )
        .hint("kbz-failover run SCENARIO --runs 1 --writers 4 --duration 35")]));
    }
    let all = kbz_stack::components();
    let session = prepare(c, BIN, &all, session::Secrets::InMemory)?;
    let ctx = &session.ctx;
    if s.fault == kbz_faults::Fault::Isolate {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E010,
            format!("scenario {} isolates a host by the lab's bridge port; kbz-failover has no such command for a real fleet", s.name),
        )
        .hint("on the lab run `cargo xtask failover postgres-leader-isolation`; on a fleet use postgres-leader-partition or postgres-leader-crash")]));
    }
    if s.needs_commands()
        && (ctx.config.failover.power_off.is_none() || ctx.config.failover.power_on.is_none())
    {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E008,
            format!("scenario {} cuts a host's power: [failover] power_off and power_on are not set", s.name),
        )
        .hint("set both in kbz.toml, e.g. `power_off = \"ipmitool -H {host}-bmc chassis power off\"`; the lab uses `cargo xtask lab kill {host}` / `lab start {host}`")]));
    }
    needs(&s, ctx)?;
    let ssh = connect::ssh_options(&session.inputs, c)?;
    let connector = connect::connector(&session.inputs, c, false)?;
    let rt = runtime()?;

    // Refuse unless healthy: kbz-health's own checks.
    // A cluster just back from a fault may need a few seconds (a replica catching up): a
    // degraded or down answer is asked again for up to 30 s; unreachable hosts are final.
    let asked = std::time::Instant::now();
    let health = loop {
        let h = rt.block_on(crate::health::check(ctx, &all, connector.as_ref()));
        let code = h.exit_code();
        if code == exit::OK || code == exit::UNREACHABLE || asked.elapsed().as_secs() >= 30 {
            break h;
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    if health.exit_code() != exit::OK {
        let failing: Vec<String> = health
            .failing()
            .map(|x| format!("{} {} {}: {}", x.host, x.component, x.check, x.detail))
            .collect();
        let code = health.exit_code();
        return Err(Failure::new(
            Diagnostic::new(
                Code::E040,
                format!(
                    "the cluster is {}, kbz-failover injects nothing into an unhealthy cluster: {}",
                    health.status,
                    failing.join("; ")
                ),
            )
            .hint("fix what `kbz-health --inventory servers.tsv` reports, then run again"),
            if code == exit::UNREACHABLE {
                code
            } else {
                exit::DOWN
            },
        ));
    }
    // Behind a bastion the service ports are reached through its tunnels (kept open until
    // the end of the run); directly otherwise.
    let bastion = bastion::open(&ssh, &bastion::addresses(ctx))?;
    let routes = bastion
        .as_ref()
        .map(|b| b.routes.clone())
        .unwrap_or_default();
    if let Some(b) = &bastion {
        crate::errln!(
            "kbz-failover: the workload and the service checks go through the bastion {} ({} tunnels)",
            b.jump,
            b.tunnels()
        );
    }
    let t = rt.block_on(target(ctx, connector.as_ref(), o.writers, &routes))?;
    // One mutating run at a time: the controller's lock and the host lock of every host a
    // fault can reach (PostgreSQL, Redis and lb hosts), held until the faults are healed and
    // the scratch data is removed.
    let _locks = crate::lock::controller_and_hosts(
        &rt,
        session.inputs.state_dir.as_deref(),
        "kbz-failover run",
        t.hosts().iter().map(|m| m.exec.clone()).collect(),
        kbz_core::shell::HOST_LOCK_PATH,
    )?;
    match s.service() {
        kbz_faults::Service::Postgres => rt.block_on(vip_answers(&t, &s))?,
        kbz_faults::Service::Redis => rt.block_on(redis_vip_answers(&t, &s.name))?,
        kbz_faults::Service::Kubernetes => rt.block_on(k8s_vip_answers(&t, &s))?,
        kbz_faults::Service::Mariadb => rt.block_on(galera_vip_answers(&t, &s))?,
        kbz_faults::Service::Rabbitmq => rt.block_on(rabbitmq_vip_answers(&t, &s))?,
    }

    if !o.yes {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(Failure::input(vec![Diagnostic::new(
                Code::E010,
                "kbz-failover injects real faults and asks first; stdin is not a terminal",
            )
            .hint("pass --yes to run without the question")]));
        }
        let q = format!(
            "Inject `{}` ({}) into cluster {} {} time(s)?",
            s.name,
            s.describe(),
            ctx.config.cluster.name,
            o.runs
        );
        if !ui::confirm(&q) {
            crate::errln!("Nothing was injected.");
            return Ok(exit::OK);
        }
    }

    let timing = kbz_faults::Timing {
        fault: Duration::from_secs(o.duration),
        ..kbz_faults::Timing::default()
    };
    let cfg = ctx.config.failover.clone();
    let json = c.json;
    let scenario_name = s.name.clone();
    let bar = ui::progress(u64::from(o.runs), &format!("runs of {scenario_name}"), json);
    let batch = rt.block_on(kbz_faults::run_all(
        &s,
        &t,
        &timing,
        o.runs,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        |p| match p {
            kbz_faults::Progress::Run(r) => {
                bar.inc(1);
                if !json {
                    bar.suspend(|| crate::outln!("{}", output::run_line(r)));
                }
            }
            kbz_faults::Progress::Interrupted => bar.suspend(|| {
                crate::errln!("Interrupted: healing every fault of {scenario_name} ...")
            }),
        },
    ));
    bar.finish_and_clear();
    let kbz_faults::Batch {
        reports,
        interrupted,
        not_healed,
    } = batch;

    let breaches: Vec<Breach> = reports
        .iter()
        .filter(|r| r.error.is_none())
        .flat_map(|r| kbz_faults::evaluate(&s, &cfg, r))
        .collect();
    let errors: Vec<String> = reports
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("run {}: {e}", r.run)))
        .collect();
    let summary = Summary::of(&reports);
    let passed = !interrupted
        && breaches.is_empty()
        && errors.is_empty()
        && not_healed.is_empty()
        && reports.len() == o.runs as usize;
    let outcome = Outcome {
        cluster: ctx.config.cluster.name.clone(),
        scenario: s.name.clone(),
        budget: s.budget(&cfg),
        runs: reports,
        summary,
        breaches,
        errors,
        not_healed,
        interrupted,
        passed,
        via: bastion.as_ref().map(|b| b.jump.clone()),
    };
    tracing::info!(scenario = %s.name, runs = outcome.runs.len(), passed, breaches = outcome.breaches.len(), "failover run");
    if c.json {
        crate::outln!("{}", output::json(&outcome));
    } else {
        crate::out!("{}", output::table(&outcome));
    }
    let diags = output::diagnostics(&outcome);
    if session.notifiers.has_enabled() {
        let event = output::event(&outcome, diags.first());
        warn_failed(rt.block_on(session.notifiers.send(&event)));
    }
    if diags.is_empty() {
        return Ok(exit::OK);
    }
    if !c.json {
        ui::diagnostics(&diags, false);
    }
    Ok(exit::FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Host;
    use std::sync::Arc;

    /// The example context with `hosts` as its inventory and only the named VIPs.
    fn ctx(hosts: Vec<Host>, vips: &[&str]) -> Context {
        let mut c = kbz_testkit::example_context(Vec::<String>::new());
        let mut cfg = (*c.config).clone();
        cfg.vips.retain(|k, _| vips.contains(&k.as_str()));
        c.config = Arc::new(cfg);
        let mut inv = (*c.inventory).clone();
        inv.hosts = hosts;
        c.inventory = Arc::new(inv);
        c
    }

    fn hosts(role: Role, n: u8) -> Vec<Host> {
        (1..=n)
            .map(|i| {
                Host::new(
                    &format!("h{i}"),
                    format!("10.0.0.{i}").parse().expect("ip"),
                    &[role],
                )
            })
            .collect()
    }

    fn code(r: Result<(), Failure>) -> Option<Code> {
        r.err().map(|f| f.diagnostics[0].code)
    }

    #[test]
    fn a_redis_scenario_needs_no_postgresql_and_a_postgresql_one_says_what_is_missing() {
        let redis = scenario("redis-master-crash").expect("scenario");
        let pg = scenario("postgres-switchover").expect("scenario");
        let vip = scenario("vip-holder-crash").expect("scenario");
        // A Redis-only fleet: no [vips] postgres, no postgres host.
        let only_redis = ctx(hosts(Role::Redis, 3), &["redis"]);
        assert_eq!(code(needs(&redis, &only_redis)), None);
        let f = needs(&pg, &only_redis).expect_err("no PostgreSQL VIP");
        assert_eq!(f.diagnostics[0].code, Code::E008);
        assert!(
            f.diagnostics[0].message.contains("[vips] postgres"),
            "{:?}",
            f.diagnostics[0]
        );
        assert_eq!(f.exit, exit::INPUT);
        assert_eq!(code(needs(&vip, &only_redis)), Some(Code::E008));
        // A PostgreSQL VIP with one postgres host: no replica to fail over to.
        let one_pg = ctx(hosts(Role::Postgres, 1), &["postgres"]);
        assert_eq!(code(needs(&pg, &one_pg)), Some(Code::E010));
        // PostgreSQL without Redis: the Redis scenarios say so.
        let only_pg = ctx(hosts(Role::Postgres, 3), &["postgres"]);
        assert_eq!(code(needs(&pg, &only_pg)), None);
        assert_eq!(code(needs(&redis, &only_pg)), Some(Code::E008));
        let no_hosts = ctx(hosts(Role::Postgres, 3), &["postgres", "redis"]);
        assert_eq!(code(needs(&redis, &no_hosts)), Some(Code::E008));
    }

    #[test]
    fn a_master_crash_needs_three_k8s_masters_and_the_api_vip() {
        let k8s = scenario("k8s-master-crash").expect("scenario");
        // A fleet without Kubernetes: E010 naming the role and the count.
        let f = needs(
            &k8s,
            &ctx(hosts(Role::Postgres, 3), &["postgres", "k8s_api"]),
        )
        .expect_err("no k8s-master host");
        let d = &f.diagnostics[0];
        assert_eq!((d.code, f.exit), (Code::E010, exit::INPUT));
        assert!(d.message.contains("0 k8s-master host(s)"), "{d:?}");
        assert!(d.message.contains("3 or more"), "{d:?}");
        // Two masters: one down would cost etcd its quorum.
        let two = ctx(hosts(Role::K8sMaster, 2), &["k8s_api"]);
        assert_eq!(code(needs(&k8s, &two)), Some(Code::E010));
        // Three masters without the API VIP: E008 naming the key.
        let f = needs(&k8s, &ctx(hosts(Role::K8sMaster, 3), &[])).expect_err("no VIP");
        assert_eq!(f.diagnostics[0].code, Code::E008);
        assert!(f.diagnostics[0].message.contains("[vips] k8s_api"));
        assert_eq!(
            code(needs(&k8s, &ctx(hosts(Role::K8sMaster, 3), &["k8s_api"]))),
            None
        );
    }

    #[test]
    fn a_galera_crash_needs_three_mariadb_hosts_and_the_mariadb_vip() {
        let g = scenario("galera-node-crash").expect("scenario");
        // No [vips] mariadb: E008 naming the key, from the inputs alone.
        let f = needs(&g, &ctx(hosts(Role::Mariadb, 3), &["postgres"])).expect_err("no VIP");
        assert_eq!((f.diagnostics[0].code, f.exit), (Code::E008, exit::INPUT));
        assert!(
            f.diagnostics[0].message.contains("[vips] mariadb"),
            "{:?}",
            f.diagnostics[0]
        );
        // Two nodes: the survivor of a crash would not be a Primary component.
        let f = needs(&g, &ctx(hosts(Role::Mariadb, 2), &["mariadb"])).expect_err("two nodes");
        assert_eq!(f.diagnostics[0].code, Code::E010);
        assert!(
            f.diagnostics[0].message.contains("2 mariadb host(s)")
                && f.diagnostics[0].message.contains("3 or more"),
            "{:?}",
            f.diagnostics[0]
        );
        // A MariaDB-only fleet needs no PostgreSQL.
        assert_eq!(
            code(needs(&g, &ctx(hosts(Role::Mariadb, 3), &["mariadb"]))),
            None
        );
    }
}
