//! `cargo xtask lab`: a throwaway fleet of Debian 12 hosts on this machine (systemd-nspawn
//! containers, each in its own network namespace, on one bridge), for end-to-end tests.
//!
//! The functions [`up()`], [`down()`], [`status`], [`exec`], [`output`], [`ssh_command`], [`kill`],
//! [`start`], [`partition`], [`heal`], [`info`] and [`session_lock`] are the API `cargo xtask e2e` calls;
//! the CLI (`cli.rs`) is a thin layer over them. Everything the lab creates is recorded in
//! `target/lab/state.json` before it is created, and `down` removes exactly that. See
//! docs/lab.md.

mod apt_proxy;
mod base;
mod cli;
mod down;
mod files;
mod net;
mod power;
mod procs;
mod ssh;
mod state;
mod up;

use apt_proxy::*;
pub use apt_proxy::{proxy_bytes, ProxyBytes};
pub use cli::{run, Args};
pub use down::down;
use down::*;
use power::*;
pub use power::{heal, kill, partition, start, status};
use ssh::*;
pub use ssh::{exec, output, ssh_command};
pub use up::up;
use up::*;

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
