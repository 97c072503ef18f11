//! `cargo xtask lab`: a throwaway fleet of Debian 12 hosts on this machine (systemd-nspawn
//! containers, each in its own network namespace, on one bridge), for end-to-end tests.
//!
//! The functions [`up`], [`down`], [`status`], [`exec`], [`output`], [`ssh_command`], [`kill`],
//! [`start`], [`partition`], [`heal`], [`info`] and [`session_lock`] are the API `cargo xtask e2e` calls;
//! the CLI below is a thin layer over them. Everything the lab creates is recorded in
//! `target/lab/state.json` before it is created, and `down` removes exactly that. See
//! docs/lab.md.

mod base;
mod files;
mod net;
mod procs;
mod state;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use files::FileHost;
use procs::ProcId;
use serde::Serialize;
use state::{HostState, Power, State};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Most hosts a lab may have.
pub const MAX_HOSTS: u8 = 8;
/// The bridge on the controller.
const BRIDGE: &str = "kbzlab0";
/// The controller's address on the bridge: gateway and apt proxy of the hosts.
const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The lab subnet; nothing outside it (and loopback) is ever addressed.
const SUBNET: &str = "10.77.0.0/24";
const PREFIX: u8 = 24;
/// apt-cacher-ng's port.
const APT_PROXY_PORT: u16 = 3142;
/// Where `ip netns` keeps its namespaces' mount points.
const RUN_NETNS: &str = "/run/netns";
/// The interface name inside each host's namespace.
const INNER_IF: &str = "host0";
/// The SSH host key types each host gets.
const HOST_KEY_TYPES: [&str; 2] = ["ed25519", "ecdsa"];
/// How long a host may take from nspawn start to answering SSH.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// `cargo xtask lab` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Boot N hosts (building the cached base root once) and write target/lab/servers.tsv,
    /// kbz.toml and known_hosts.
    Up {
        /// Number of hosts.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=MAX_HOSTS as i64))]
        hosts: u8,
    },
    /// Remove everything the lab created, then verify nothing is left (no-op if no lab is up).
    Down,
    /// Each host: address, whether it runs, whether SSH answers. Exit 1 unless all are up.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the lab's files and hosts as JSON.
    Info,
    /// Run a command on a host over SSH (a login shell if no command); its exit code is ours.
    Exec {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
        /// Command and arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Power cut: SIGKILL the host's init (everything in it dies at once).
    Kill {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
    /// Power a killed host on again (same disk) and wait for SSH.
    Start {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
    /// Network partition: take the host's bridge port down.
    Partition {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
    /// Undo `partition`.
    Heal {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
}

/// Runs one `cargo xtask lab` command.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        LabCommand::Up { hosts } => {
            let info = up(hosts)?;
            for h in &info.hosts {
                println!("  {:<10} {:<11} {}", h.name, h.ip, h.roles.join(","));
            }
            println!("inventory:   {}", info.servers_tsv.display());
            println!("config:      {}", info.config.display());
            println!("known_hosts: {}", info.known_hosts.display());
            println!("ssh key:     {}", info.key.display());
            println!("apt proxy:   {}", info.apt_proxy);
        }
        LabCommand::Down => down()?,
        LabCommand::Status { json } => {
            let Some(hosts) = status()? else {
                println!("no lab is up");
                return Ok(ExitCode::SUCCESS);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&hosts)?);
            } else {
                println!(
                    "{:<10} {:<11} {:<8} {:<4} NETWORK",
                    "HOST", "IP", "RUNNING", "SSH"
                );
                for h in &hosts {
                    println!(
                        "{:<10} {:<11} {:<8} {:<4} {}",
                        h.name,
                        h.ip,
                        yes_no(h.running),
                        yes_no(h.ssh),
                        if h.partitioned {
                            "partitioned"
                        } else {
                            "connected"
                        }
                    );
                }
            }
            if !hosts.iter().all(|h| h.running && h.ssh) {
                return Ok(ExitCode::FAILURE);
            }
        }
        LabCommand::Info => match info()? {
            Some(info) => println!("{}", serde_json::to_string_pretty(&info)?),
            None => bail!("no lab is up"),
        },
        LabCommand::Exec { host, command } => {
            let code = exec(&host, &command)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)));
        }
        LabCommand::Kill { host } => kill(&host)?,
        LabCommand::Start { host } => start(&host)?,
        LabCommand::Partition { host } => partition(&host)?,
        LabCommand::Heal { host } => heal(&host)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A running lab, as `up` and `info` describe it.
#[derive(Debug, Clone, Serialize)]
pub struct LabInfo {
    /// `target/lab`.
    pub dir: PathBuf,
    /// The inventory, `target/lab/servers.tsv`.
    pub servers_tsv: PathBuf,
    /// The cluster config, `target/lab/kbz.toml`.
    pub config: PathBuf,
    /// The hosts' real host keys, keyed by address.
    pub known_hosts: PathBuf,
    /// The root SSH private key every host accepts.
    pub key: PathBuf,
    /// The apt proxy on the bridge, `http://10.77.0.1:3142`.
    pub apt_proxy: String,
    /// The hosts.
    pub hosts: Vec<LabHost>,
}

/// One lab host.
#[derive(Debug, Clone, Serialize)]
pub struct LabHost {
    /// Hostname, `kbzlab-hN`.
    pub name: String,
    /// Address on the lab bridge.
    pub ip: Ipv4Addr,
    /// Inventory roles.
    pub roles: Vec<String>,
}

/// One host's condition, as `status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// Hostname.
    pub name: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Powered on, or cut by `kill`.
    pub power: Power,
    /// The container's processes are alive.
    pub running: bool,
    /// `ssh root@IP true` succeeds with the lab key and known_hosts.
    pub ssh: bool,
    /// Its bridge port is down.
    pub partitioned: bool,
}

/// The lab's files, all under `target/lab`.
#[derive(Debug, Clone)]
struct Paths {
    dir: PathBuf,
    state: PathBuf,
    lock: PathBuf,
    session_lock: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    servers: PathBuf,
    config: PathBuf,
    hosts: PathBuf,
    logs: PathBuf,
    pids: PathBuf,
}

/// `target/lab` of this workspace.
pub fn lab_dir() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).join("target").join("lab")
}

fn paths() -> Paths {
    let dir = lab_dir();
    Paths {
        state: dir.join("state.json"),
        lock: dir.join("lab.lock"),
        session_lock: dir.join("session.lock"),
        key: dir.join("id_ed25519"),
        known_hosts: dir.join("known_hosts"),
        servers: dir.join("servers.tsv"),
        config: dir.join("kbz.toml"),
        hosts: dir.join("hosts"),
        logs: dir.join("logs"),
        pids: dir.join("pids"),
        dir,
    }
}

/// An exclusive lock on a file under `target/lab`, held until dropped.
#[derive(Debug)]
pub struct SessionLock {
    _file: std::fs::File,
}

fn lock_file(path: &Path, what: &str) -> Result<SessionLock> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?
        .into_parts()
        .0;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("lab: waiting for {what} ({} is held)", path.display());
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    Ok(SessionLock { _file: file })
}

/// Waits for and takes the lab session lock (`target/lab/session.lock`). Whoever runs a whole
/// scenario (`lab up` ... `lab down`, as e2e and the lab test do) holds it, so that only one
/// such user has the lab at a time.
#[allow(dead_code)] // API for `cargo xtask e2e`.
pub fn session_lock() -> Result<SessionLock> {
    lock_file(&paths().session_lock, "another lab session")
}

/// Serializes commands that change the lab (`up`, `down`, `kill`, ...).
fn change_lock(p: &Paths) -> Result<SessionLock> {
    lock_file(&p.lock, "another lab command")
}

fn require_root() -> Result<()> {
    let status = fs_err::read_to_string("/proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if uid != "0" {
        bail!("the lab needs root (network namespaces, bridges, systemd-nspawn); run as root");
    }
    Ok(())
}

/// Runs a command to completion and returns its stdout; a failure names the command and
/// shows its stderr.
fn run_cmd(cmd: &mut Command) -> Result<String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn host_name(i: u8) -> String {
    format!("kbzlab-h{i}")
}

fn host_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 10 + i)
}

fn veth_name(i: u8) -> String {
    format!("kbzl-h{i}")
}

fn tcp_open(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Boots a lab of `count` hosts (1..=8) and writes its files. Refuses if a lab is already up.
/// On failure it removes whatever it created before returning the error.
pub fn up(count: u8) -> Result<LabInfo> {
    anyhow::ensure!(
        (1..=MAX_HOSTS).contains(&count),
        "a lab has 1 to {MAX_HOSTS} hosts, not {count}"
    );
    require_root()?;
    let p = paths();
    fs_err::create_dir_all(&p.dir)?;
    let _lock = change_lock(&p)?;
    if p.state.exists() {
        bail!(
            "a lab is already up ({}); run `cargo xtask lab down` first",
            p.state.display()
        );
    }
    let started = Instant::now();
    base::ensure_prerequisites()?;
    preflight(count)?;
    let t_prereq = started.elapsed();
    fs_err::create_dir_all(&p.logs)?;
    let t = Instant::now();
    let base = base::ensure_base(&p.logs.join("debootstrap.log"))?;
    let t_base = t.elapsed();
    ensure_key(&p)?;

    let mut state = State::new();
    for i in 1..=count {
        let name = host_name(i);
        state.hosts.push(HostState {
            ip: host_ip(i),
            index: i,
            roles: files::roles_for(i),
            netns: None,
            veth: None,
            dir: None,
            upper: p.hosts.join(&name).join("upper"),
            log: p.logs.join(format!("{name}.log")),
            pidfile: p.pids.join(format!("{name}.pid")),
            nspawn: None,
            leader: None,
            power: Power::On,
            partitioned: false,
            name,
        });
    }
    state.save(&p.state)?;
    match bring_up(&p, &base, &mut state) {
        Ok((t_prepare, t_boot)) => {
            println!(
                "lab up: {count} host{} in {} (prerequisites {}, base {}{}, prepare {}, boot to SSH {})",
                if count == 1 { "" } else { "s" },
                secs(started.elapsed()),
                secs(t_prereq),
                secs(t_base),
                if t_base < Duration::from_secs(1) { " cached" } else { "" },
                secs(t_prepare),
                secs(t_boot),
            );
            Ok(lab_info(&p, &state))
        }
        Err(err) => {
            eprintln!("lab: up failed, removing what it created: {err:#}");
            if let Err(e) = teardown(&p, &mut state) {
                eprintln!("lab: teardown after the failed up also failed: {e:#}");
            }
            Err(err)
        }
    }
}

/// The controller's current values of the kernel-global sysctls module 1 sets.
fn global_sysctls() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, _) in kbz_base::SYSCTLS
        .iter()
        .filter(|(k, _)| !k.starts_with("net."))
    {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        if let Ok(v) = fs_err::read_to_string(&path) {
            out.push((key.to_string(), v.trim().to_string()));
        }
    }
    Ok(out)
}

/// Writes back the kernel-global sysctls recorded by `up`.
fn restore_sysctls(state: &State) -> Result<()> {
    for (key, value) in &state.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs_err::write(&path, format!("{value}\n")).with_context(|| format!("restore {key}"))?;
    }
    Ok(())
}

/// Refuses to start if any name or the subnet the lab would use is taken already.
fn preflight(count: u8) -> Result<()> {
    let hint = "it is a leftover of an earlier lab or belongs to someone else; remove it";
    if net::link_exists(BRIDGE) {
        bail!("network link {BRIDGE} already exists but no lab is recorded: {hint} (`ip link del {BRIDGE}`)");
    }
    if net::route_exists(SUBNET)? {
        bail!("the controller already routes {SUBNET}; the lab needs that subnet for itself");
    }
    let namespaces = net::netns_list()?;
    for i in 1..=count {
        let (ns, veth) = (host_name(i), veth_name(i));
        if namespaces.contains(&ns) {
            bail!("network namespace {ns} already exists but no lab is recorded: {hint} (`ip netns del {ns}`)");
        }
        if net::link_exists(&veth) {
            bail!("network link {veth} already exists but no lab is recorded: {hint} (`ip link del {veth}`)");
        }
    }
    Ok(())
}

/// Generates the lab's root SSH key once (kept across labs).
fn ensure_key(p: &Paths) -> Result<()> {
    if p.key.exists() && p.key.with_extension("pub").exists() {
        return Ok(());
    }
    for f in [p.key.clone(), p.key.with_extension("pub")] {
        if f.exists() {
            fs_err::remove_file(f)?;
        }
    }
    run_cmd(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kbz-lab"])
            .arg("-f")
            .arg(&p.key),
    )?;
    Ok(())
}

/// Creates the bridge, the apt proxy, each host's disk, network and container, and waits for
/// SSH. Returns the prepare and boot durations.
fn bring_up(p: &Paths, base: &Path, state: &mut State) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    state.sysctls = global_sysctls()?;
    state.bridge = Some(BRIDGE.into());
    state.save(&p.state)?;
    net::create_bridge(BRIDGE, BRIDGE_IP, PREFIX)?;
    ensure_apt_proxy(p, state)?;

    // Disks: each host's overlay upper dir, pre-seeded with its identity, in parallel.
    for h in state.hosts.iter_mut() {
        h.dir = Some(p.hosts.join(&h.name));
    }
    state.save(&p.state)?;
    let file_hosts: Vec<FileHost> = state
        .hosts
        .iter()
        .map(|h| FileHost {
            name: h.name.clone(),
            ip: h.ip,
            roles: h.roles.clone(),
        })
        .collect();
    let authorized = fs_err::read_to_string(p.key.with_extension("pub"))?;
    let host_keys: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
        let jobs: Vec<_> = state
            .hosts
            .iter()
            .map(|h| s.spawn(|| prepare_upper(h, &file_hosts, &authorized)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panic"))))
            .collect()
    });
    let mut known_hosts = String::new();
    for (h, keys) in state.hosts.iter().zip(host_keys) {
        let keys = keys.with_context(|| format!("cannot prepare {}", h.name))?;
        known_hosts.push_str(&files::known_hosts_lines(h.ip, &keys));
    }
    state.files = vec![p.known_hosts.clone(), p.servers.clone(), p.config.clone()];
    state.save(&p.state)?;
    fs_err::write(&p.known_hosts, known_hosts)?;

    // Network: one namespace and veth pair per host.
    // `ip netns add` makes /run/netns a mount point of its own if it is not one yet.
    let run_netns = PathBuf::from(RUN_NETNS);
    if !net::mount_points()?.contains(&run_netns) {
        state.mounts.push(run_netns);
    }
    for i in 0..state.hosts.len() {
        let (name, index, ip) = {
            let h = &state.hosts[i];
            (h.name.clone(), h.index, h.ip)
        };
        state.hosts[i].netns = Some(name.clone());
        state.mounts.push(Path::new(RUN_NETNS).join(&name));
        state.save(&p.state)?;
        net::create_netns(&name)?;
        let veth = veth_name(index);
        state.hosts[i].veth = Some(veth.clone());
        state.save(&p.state)?;
        net::create_host_link(&name, &veth, INNER_IF, BRIDGE, ip, PREFIX, BRIDGE_IP)?;
    }
    let t_prepare = t.elapsed();

    // Boot all, then wait for all.
    let t = Instant::now();
    for i in 0..state.hosts.len() {
        boot(p, base, state, i)?;
    }
    wait_all_ssh(p, state, &(0..state.hosts.len()).collect::<Vec<_>>())?;
    let t_boot = t.elapsed();

    fs_err::write(&p.servers, files::servers_tsv(&file_hosts))?;
    fs_err::write(&p.config, files::kbz_toml(&p.key, &p.known_hosts))?;
    Ok((t_prepare, t_boot))
}

/// Fills a host's overlay upper dir: its own SSH host keys (so they are known before boot),
/// hostname, /etc/hosts, machine id and root's authorized_keys. Returns the public host keys.
fn prepare_upper(h: &HostState, all: &[FileHost], authorized: &str) -> Result<Vec<String>> {
    let dir = h.dir.as_ref().context("host dir not recorded")?;
    base::remove_tree(dir)?;
    let upper = &h.upper;
    let mode = |path: &Path, mode: u32| {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    for (sub, m) in [
        ("", 0o755),
        ("etc", 0o755),
        ("etc/ssh", 0o755),
        ("root", 0o700),
        ("root/.ssh", 0o700),
    ] {
        let d = upper.join(sub);
        fs_err::create_dir_all(&d)?;
        mode(&d, m)?;
    }
    // Ed25519 and ECDSA host keys of its own (RSA is left out: generating it costs seconds
    // per host, and every client kbz uses speaks both), named by a drop-in so sshd does not
    // look for the missing RSA key.
    let etc = upper.join("etc");
    for kind in HOST_KEY_TYPES {
        let key = etc.join(format!("ssh/ssh_host_{kind}_key"));
        run_cmd(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    &format!("root@{}", h.name),
                    "-f",
                ])
                .arg(&key),
        )?;
    }
    let dropin = etc.join("ssh/sshd_config.d");
    fs_err::create_dir_all(&dropin)?;
    mode(&dropin, 0o755)?;
    let hostkeys: String = HOST_KEY_TYPES
        .iter()
        .map(|k| format!("HostKey /etc/ssh/ssh_host_{k}_key\n"))
        .collect();
    fs_err::write(
        dropin.join("00-kbz-lab-hostkeys.conf"),
        format!("# Written by `cargo xtask lab`: this host's own keys.\n{hostkeys}"),
    )?;
    fs_err::write(etc.join("hostname"), format!("{}\n", h.name))?;
    fs_err::write(etc.join("hosts"), files::etc_hosts(all))?;
    mode(&etc.join("hosts"), 0o644)?;
    fs_err::write(etc.join("machine-id"), format!("{}\n", random_hex(16)?))?;
    mode(&etc.join("machine-id"), 0o444)?;
    let keys = upper.join("root/.ssh/authorized_keys");
    fs_err::write(&keys, authorized)?;
    mode(&keys, 0o600)?;

    let mut pubs: Vec<PathBuf> = fs_err::read_dir(etc.join("ssh"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("ssh_host_") && n.ends_with(".pub")
        })
        .collect();
    pubs.sort();
    anyhow::ensure!(!pubs.is_empty(), "ssh-keygen wrote no host keys");
    pubs.iter()
        .map(|p| Ok(fs_err::read_to_string(p)?.trim().to_string()))
        .collect()
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts apt-cacher-ng on the bridge address unless one already answers there.
fn ensure_apt_proxy(p: &Paths, state: &mut State) -> Result<()> {
    let addr = SocketAddr::from((BRIDGE_IP, APT_PROXY_PORT));
    if tcp_open(addr, Duration::from_millis(500)) {
        // Not ours (a system apt-cacher-ng listening on every address, say): use it, but say
        // so loudly if it cannot fetch what the hosts will ask it for.
        println!("lab: using the apt proxy already listening on {addr}");
        if let Err(e) = probe_apt_proxy(addr) {
            eprintln!(
                "lab: WARNING: the apt proxy on {addr} is not the lab's and fails a Debian fetch \
                 ({e:#}); package installs on the hosts will fail. Stop it (the lab then starts \
                 its own) or point it at {}.",
                base::MIRROR
            );
        }
        return Ok(());
    }
    let program = base::which("apt-cacher-ng").context("apt-cacher-ng is not installed")?;
    let cache = Path::new(base::CACHE_DIR).join("apt-cacher-ng");
    let run_dir = p.dir.join("apt-cacher-ng");
    fs_err::create_dir_all(&cache)?;
    fs_err::create_dir_all(&run_dir)?;
    // Its own configuration (not the system's /etc/apt-cacher-ng): listen on the bridge only,
    // and fetch Debian from the mirror this machine can reach.
    fs_err::write(
        run_dir.join("acng.conf"),
        files::acng_conf(&cache, &run_dir, BRIDGE_IP, APT_PROXY_PORT, base::MIRROR),
    )?;
    let log = p.logs.join("apt-cacher-ng.log");
    let argv: Vec<OsString> = vec![program.into(), "-c".into(), run_dir.into()];
    let pidfile = p.pids.join("apt-cacher-ng.pid");
    state.apt_cacher_ng_pidfile = Some(pidfile.clone());
    state.save(&p.state)?;
    let id = procs::spawn_detached(&argv, &[], &log, &pidfile)?;
    state.apt_cacher_ng = Some(id);
    state.save(&p.state)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !tcp_open(addr, Duration::from_millis(300)) {
        if !id.alive() {
            bail!(
                "apt-cacher-ng exited at start; {}:\n{}",
                log.display(),
                base::tail_lines(&log, 10)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "apt-cacher-ng does not answer on {addr}; see {}",
                log.display()
            );
        }
        sleep(Duration::from_millis(100));
    }
    println!("lab: started apt-cacher-ng on {addr} (pid {})", id.pid);
    Ok(())
}

/// Fetches the Debian release file through the proxy, as a host's apt would.
fn probe_apt_proxy(addr: SocketAddr) -> Result<()> {
    use std::io::{Read, Write};
    let url = format!("{}/dists/bookworm/Release", base::MIRROR);
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {url} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: kbz-lab\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status = String::from_utf8_lossy(&head[..n]);
    let status = status.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "GET {url} answered {status:?}"
    );
    Ok(())
}

/// Starts host `i`'s container in the background and records its process.
fn boot(p: &Paths, base: &Path, state: &mut State, i: usize) -> Result<()> {
    let h = &state.hosts[i];
    let netns = h.netns.as_ref().context("netns not recorded")?;
    if let Some(parent) = h.log.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::write(&h.log, "")?;
    let mut overlay = OsString::from("--overlay=");
    overlay.push(base);
    overlay.push(":");
    overlay.push(&h.upper);
    overlay.push(":/");
    let argv: Vec<OsString> = vec![
        "systemd-nspawn".into(),
        "-D".into(),
        base.into(),
        overlay,
        "--boot".into(),
        "--register=no".into(),
        "--keep-unit".into(),
        "--console=read-only".into(),
        // A real host manages its own network: addresses (keepalived's VIPs), routes, and the
        // per-namespace net.* sysctls (writable below). Its namespace is its own, so none of
        // this reaches the controller.
        "--capability=CAP_NET_ADMIN".into(),
        "-M".into(),
        h.name.clone().into(),
        format!("--network-namespace-path=/run/netns/{netns}").into(),
    ];
    // Writable /proc/sys: module 1 sets kernel-global sysctls (vm.*, fs.*) as on a real host.
    // They are the controller's; `up` recorded them and `down` restores them.
    let env = [("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "yes")];
    let id = procs::spawn_detached(&argv, &env, &h.log, &h.pidfile)?;
    let h = &mut state.hosts[i];
    h.nspawn = Some(id);
    h.leader = None;
    h.power = Power::On;
    state.save(&p.state)
}

/// Waits until every listed host answers SSH, then records each container's init process.
fn wait_all_ssh(p: &Paths, state: &mut State, which: &[usize]) -> Result<()> {
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let jobs: Vec<_> = which
            .iter()
            .map(|&i| {
                let h = &state.hosts[i];
                s.spawn(move || wait_ssh(p, h))
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panic"))))
            .collect()
    });
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    for &i in which {
        let nspawn = state.hosts[i].nspawn.context("nspawn not recorded")?;
        let children = nspawn.children();
        let [leader] = children.as_slice() else {
            bail!(
                "{}: systemd-nspawn has {} children, expected the container's init",
                state.hosts[i].name,
                children.len()
            );
        };
        state.hosts[i].leader = Some(*leader);
    }
    state.save(&p.state)
}

fn wait_ssh(p: &Paths, h: &HostState) -> Result<()> {
    let nspawn = h.nspawn.context("nspawn not recorded")?;
    let addr = SocketAddr::from((h.ip, 22));
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        if !nspawn.alive() {
            bail!(
                "{}: systemd-nspawn exited while booting; {}:\n{}",
                h.name,
                h.log.display(),
                base::tail_lines(&h.log, 15)
            );
        }
        if tcp_open(addr, Duration::from_millis(500)) {
            let ok = ssh_base(p, h.ip)
                .args(["-o", "ConnectTimeout=3", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} ({}): sshd did not answer within {}s (key {}, known_hosts {}); console log {}:\n{}",
                h.name,
                h.ip,
                BOOT_TIMEOUT.as_secs(),
                p.key.display(),
                p.known_hosts.display(),
                h.log.display(),
                base::tail_lines(&h.log, 15)
            );
        }
        sleep(Duration::from_millis(150));
    }
}

/// `ssh` with the lab key and known_hosts (strict checking, no user config), up to the
/// destination; the caller appends the remote command.
fn ssh_base(p: &Paths, ip: Ipv4Addr) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-i"])
        .arg(&p.key)
        .args(["-o", "IdentitiesOnly=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", p.known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "UpdateHostKeys=no",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{ip}"));
    cmd
}

fn load(p: &Paths) -> Result<State> {
    State::load(&p.state)?.context("no lab is up; run `cargo xtask lab up`")
}

fn lab_info(p: &Paths, state: &State) -> LabInfo {
    LabInfo {
        dir: p.dir.clone(),
        servers_tsv: p.servers.clone(),
        config: p.config.clone(),
        known_hosts: p.known_hosts.clone(),
        key: p.key.clone(),
        apt_proxy: format!("http://{BRIDGE_IP}:{APT_PROXY_PORT}"),
        hosts: state
            .hosts
            .iter()
            .map(|h| LabHost {
                name: h.name.clone(),
                ip: h.ip,
                roles: h.roles.clone(),
            })
            .collect(),
    }
}

/// The running lab, or `None` if none is up.
pub fn info() -> Result<Option<LabInfo>> {
    let p = paths();
    Ok(State::load(&p.state)?.map(|s| lab_info(&p, &s)))
}

/// An `ssh` command to `host` (name, `hN`, `N` or address) with the lab key and known_hosts;
/// append the remote command with `.arg(...)`.
pub fn ssh_command(host: &str) -> Result<Command> {
    let p = paths();
    let state = load(&p)?;
    Ok(ssh_base(&p, state.host(host)?.ip))
}

/// Runs a command on a host with inherited stdio and returns its exit code (255: SSH failed).
/// The words are joined by spaces and run by the remote shell, as `ssh` does. No command
/// opens a login shell.
pub fn exec(host: &str, command: &[String]) -> Result<i32> {
    let mut cmd = ssh_command(host)?;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        cmd.arg("-t");
    }
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    let status = cmd.status().context("cannot run ssh")?;
    Ok(status.code().unwrap_or(255))
}

/// Runs a shell script on a host and captures its output (for assertions).
#[allow(dead_code)] // API for `cargo xtask e2e`.
pub fn output(host: &str, script: &str) -> Result<Output> {
    let mut cmd = ssh_command(host)?;
    cmd.arg("--").arg(script).stdin(Stdio::null());
    cmd.output().context("cannot run ssh")
}

/// Each host's condition; `None` if no lab is up.
pub fn status() -> Result<Option<Vec<HostStatus>>> {
    let p = paths();
    let Some(state) = State::load(&p.state)? else {
        return Ok(None);
    };
    let hosts = std::thread::scope(|s| {
        let jobs: Vec<_> = state
            .hosts
            .iter()
            .map(|h| {
                let p = &p;
                s.spawn(move || {
                    let running = h.power == Power::On
                        && h.nspawn.is_some_and(|n| n.alive())
                        && h.leader.is_some_and(|l| l.alive());
                    let ssh = running
                        && tcp_open(SocketAddr::from((h.ip, 22)), Duration::from_secs(1))
                        && ssh_base(p, h.ip)
                            .args(["-o", "ConnectTimeout=3", "true"])
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success());
                    HostStatus {
                        name: h.name.clone(),
                        ip: h.ip,
                        power: h.power,
                        running,
                        ssh,
                        // The bridge port's real state, whoever changed it.
                        partitioned: h
                            .veth
                            .as_ref()
                            .is_some_and(|v| !net::link_is_up(v).unwrap_or(true)),
                    }
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("status thread panicked"))
            .collect()
    });
    Ok(Some(hosts))
}

/// Power cut: SIGKILL the host's init (the kernel then kills everything in its PID
/// namespace at once) and its systemd-nspawn. Its disk, namespace and link stay for `start`.
pub fn kill(host: &str) -> Result<()> {
    let p = paths();
    let _lock = change_lock(&p)?;
    let mut state = load(&p)?;
    let i = state.host_index(host)?;
    stop_host(&state.hosts[i])?;
    // A dead machine's NIC answers nothing: no ARP, no ping, no TCP reset from a leftover
    // stack in its namespace. Peers see timeouts, as after a real power cut.
    if let Some(ns) = &state.hosts[i].netns {
        net::set_link_in(ns, INNER_IF, false)?;
    }
    let h = &mut state.hosts[i];
    h.power = Power::Off;
    h.nspawn = None;
    h.leader = None;
    println!("lab: {} powered off (killed)", h.name);
    state.save(&p.state)
}

/// Powers a killed host on again with the same disk and waits for SSH.
pub fn start(host: &str) -> Result<()> {
    let p = paths();
    let _lock = change_lock(&p)?;
    let mut state = load(&p)?;
    let i = state.host_index(host)?;
    if state.hosts[i].power == Power::On {
        bail!("{} is running; `lab kill` it first", state.hosts[i].name);
    }
    let base = base::ensure_base(&p.logs.join("debootstrap.log"))?;
    let t = Instant::now();
    if let Some(ns) = &state.hosts[i].netns {
        net::set_link_in(ns, INNER_IF, true)?;
    }
    boot(&p, &base, &mut state, i)?;
    wait_all_ssh(&p, &mut state, &[i])?;
    println!(
        "lab: {} booted in {}",
        state.hosts[i].name,
        secs(t.elapsed())
    );
    Ok(())
}

/// Network partition: takes the host's bridge port down (nothing reaches it, not even SSH).
pub fn partition(host: &str) -> Result<()> {
    set_partitioned(host, true)
}

/// Ends a partition: brings the host's bridge port up again.
pub fn heal(host: &str) -> Result<()> {
    set_partitioned(host, false)
}

fn set_partitioned(host: &str, partitioned: bool) -> Result<()> {
    let p = paths();
    let _lock = change_lock(&p)?;
    let mut state = load(&p)?;
    let i = state.host_index(host)?;
    let veth = state.hosts[i].veth.clone().context("veth not recorded")?;
    net::set_link(&veth, !partitioned)?;
    state.hosts[i].partitioned = partitioned;
    println!(
        "lab: {} {} ({veth} {})",
        state.hosts[i].name,
        if partitioned { "partitioned" } else { "healed" },
        if partitioned { "down" } else { "up" }
    );
    state.save(&p.state)
}

/// Kills a host's container init and systemd-nspawn (recorded pids only) and waits for both.
fn stop_host(h: &HostState) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The init is nspawn's child; during boot another helper may be, so take all of them.
        let mut victims: Vec<ProcId> = h.nspawn.map(|n| n.children()).unwrap_or_default();
        victims.extend(h.leader);
        victims.retain(|v| v.alive());
        for v in &victims {
            v.signal("KILL")?;
        }
        let nspawn_gone = h.nspawn.is_none_or(|n| n.wait_gone(Duration::from_secs(5)));
        if nspawn_gone && victims.iter().all(|v| v.wait_gone(Duration::from_secs(5))) {
            break;
        }
        if Instant::now() >= deadline {
            if let Some(n) = h.nspawn {
                n.stop("KILL", Duration::from_secs(5))?;
            }
            break;
        }
    }
    // nspawn removes this on a clean exit; a killed nspawn leaves it behind.
    let propagate = Path::new("/run/systemd/nspawn/propagate").join(&h.name);
    base::remove_tree(&propagate)?;
    Ok(())
}

/// Removes everything the lab recorded, then verifies nothing of it is left. A no-op success
/// if no lab is up. Fails (keeping the state file for another try) if anything remains.
pub fn down() -> Result<()> {
    let p = paths();
    if !p.state.exists() {
        println!("lab down: no lab is up");
        return Ok(());
    }
    require_root()?;
    let _lock = change_lock(&p)?;
    let Some(mut state) = State::load(&p.state)? else {
        println!("lab down: no lab is up");
        return Ok(());
    };
    let t = Instant::now();
    teardown(&p, &mut state)?;
    println!("lab down: removed everything in {}", secs(t.elapsed()));
    Ok(())
}

fn teardown(p: &Paths, state: &mut State) -> Result<()> {
    // A launch whose pid did not make it into the state (the caller died right then) is
    // found by the pid file its launcher wrote.
    for h in state.hosts.iter_mut() {
        if let Some(id) = procs::adopt(&h.pidfile, &["-M", &h.name]) {
            h.nspawn = Some(id);
        }
    }
    if let Some(pidfile) = &state.apt_cacher_ng_pidfile {
        let conf_dir = p.dir.join("apt-cacher-ng").display().to_string();
        if let Some(id) = procs::adopt(pidfile, &["-c", &conf_dir]) {
            state.apt_cacher_ng = Some(id);
        }
    }

    let mut errors: Vec<String> = Vec::new();
    let mut note = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            errors.push(format!("{what}: {e:#}"));
        }
    };

    // Processes first, so nothing holds the namespaces or the upper dirs.
    let stops: Vec<(String, Result<()>)> = std::thread::scope(|s| {
        let jobs: Vec<_> = state
            .hosts
            .iter()
            .map(|h| (h.name.clone(), s.spawn(move || stop_host(h))))
            .collect();
        jobs.into_iter()
            .map(|(n, j)| {
                (
                    n,
                    j.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panic"))),
                )
            })
            .collect()
    });
    for (name, r) in stops {
        note(&format!("stop {name}"), r);
    }
    note("restore kernel sysctls", restore_sysctls(state));
    if let Some(acng) = state.apt_cacher_ng {
        note(
            "stop apt-cacher-ng",
            acng.stop("TERM", Duration::from_secs(5)),
        );
    }
    // Anything still inside a lab host's network namespace belongs to that host.
    for ns in state.hosts.iter().filter_map(|h| h.netns.as_ref()) {
        let inside = procs::in_netns(&Path::new(RUN_NETNS).join(ns));
        if !inside.is_empty() {
            println!(
                "lab down: killing {} processes left in namespace {ns}",
                inside.len()
            );
        }
        for id in &inside {
            note(
                &format!("kill {} in {ns}", id.pid),
                id.stop("KILL", Duration::from_secs(5)),
            );
        }
    }

    // Network.
    for h in &state.hosts {
        if let Some(ns) = &h.netns {
            note(&format!("netns {ns}"), net::delete_netns(ns));
        }
        if let Some(veth) = &h.veth {
            note(&format!("link {veth}"), net::delete_link(veth));
        }
    }
    if let Some(bridge) = &state.bridge {
        note(&format!("link {bridge}"), net::delete_link(bridge));
    }

    // Mounts, deepest first. /run/netns is shared by every `ip netns` user: it goes only if
    // the lab created it and no namespace of anyone is left in it.
    let mounted = net::mount_points().unwrap_or_default();
    let mut recorded = state.mounts.clone();
    recorded.sort();
    for m in recorded.iter().rev() {
        if m == Path::new(RUN_NETNS) {
            if mounted.contains(m) && dir_is_empty(m) {
                note("unmount /run/netns", net::unmount(m));
                note(
                    "remove /run/netns",
                    fs_err::remove_dir(m).map_err(Into::into),
                );
            }
            continue;
        }
        if mounted.contains(m) {
            note(&format!("unmount {}", m.display()), net::unmount(m));
        }
        if m.is_file() {
            note(
                &format!("remove {}", m.display()),
                fs_err::remove_file(m).map_err(Into::into),
            );
        }
    }

    // Disks and files.
    for h in &state.hosts {
        if let Some(dir) = &h.dir {
            note(&format!("remove {}", dir.display()), base::remove_tree(dir));
        }
    }
    if p.hosts.is_dir() && fs_err::read_dir(&p.hosts)?.next().is_none() {
        note(
            "remove hosts dir",
            fs_err::remove_dir(&p.hosts).map_err(Into::into),
        );
    }
    for f in state
        .hosts
        .iter()
        .map(|h| &h.pidfile)
        .chain(&state.apt_cacher_ng_pidfile)
    {
        if f.exists() {
            note(
                &format!("remove {}", f.display()),
                fs_err::remove_file(f).map_err(Into::into),
            );
        }
    }
    if p.pids.is_dir() && dir_is_empty(&p.pids) {
        note(
            "remove pids dir",
            fs_err::remove_dir(&p.pids).map_err(Into::into),
        );
    }
    for f in &state.files {
        if f.exists() {
            note(
                &format!("remove {}", f.display()),
                fs_err::remove_file(f).map_err(Into::into),
            );
        }
    }

    // Verify. Namespace and veth destruction is asynchronous in the kernel: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = leftovers(state)?;
    while !left.is_empty() && Instant::now() < deadline {
        sleep(Duration::from_millis(100));
        left = leftovers(state)?;
    }
    if !left.is_empty() || !errors.is_empty() {
        state.save(&p.state)?;
        let mut msg = String::from("lab down did not remove everything");
        for l in &left {
            msg.push_str(&format!("\n  left behind: {l}"));
        }
        for e in &errors {
            msg.push_str(&format!("\n  error: {e}"));
        }
        msg.push_str(&format!(
            "\nthe state stays in {}; fix and rerun `cargo xtask lab down`",
            p.state.display()
        ));
        bail!(msg);
    }
    fs_err::remove_file(&p.state)?;
    // Dead processes stay in the process table until their parent (usually init) reaps
    // them; give it a moment so `ps` shows nothing of the lab either.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut zombies = recorded_procs(state);
    zombies.retain(|(_, id)| id.exists());
    while !zombies.is_empty() && Instant::now() < deadline {
        sleep(Duration::from_millis(100));
        zombies.retain(|(_, id)| id.exists());
    }
    for (what, id) in zombies {
        println!(
            "lab down: note: process {} ({what}) is dead but not yet reaped by its parent",
            id.pid
        );
    }
    Ok(())
}

/// Every process the lab recorded, with what it is.
fn recorded_procs(state: &State) -> Vec<(String, ProcId)> {
    let mut procs: Vec<(String, ProcId)> = Vec::new();
    for h in &state.hosts {
        procs.extend(
            h.nspawn
                .map(|n| (format!("systemd-nspawn of {}", h.name), n)),
        );
        procs.extend(h.leader.map(|n| (format!("init of {}", h.name), n)));
    }
    procs.extend(
        state
            .apt_cacher_ng
            .map(|a| ("apt-cacher-ng".to_string(), a)),
    );
    procs
}

fn dir_is_empty(dir: &Path) -> bool {
    fs_err::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// What of the recorded lab still exists: namespaces, links, mounts, processes.
fn leftovers(state: &State) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let namespaces = net::netns_list()?;
    let mut links: Vec<&String> = state.bridge.iter().collect();
    for h in &state.hosts {
        if let Some(ns) = &h.netns {
            if namespaces.contains(ns) {
                left.push(format!("network namespace {ns}"));
            }
        }
        links.extend(h.veth.iter());
    }
    for l in links {
        if net::link_exists(l) {
            left.push(format!("network link {l}"));
        }
    }
    let lab_dirs: Vec<&PathBuf> = state.hosts.iter().filter_map(|h| h.dir.as_ref()).collect();
    for m in net::mount_points()? {
        let ours = if m == Path::new(RUN_NETNS) {
            state.mounts.contains(&m) && dir_is_empty(&m)
        } else {
            state.mounts.contains(&m)
        };
        if ours || lab_dirs.iter().any(|d| m.starts_with(d)) {
            left.push(format!("mount {}", m.display()));
        }
    }
    for (what, id) in recorded_procs(state) {
        if id.alive() {
            left.push(format!("process {} ({what})", id.pid));
        }
    }
    Ok(left)
}
