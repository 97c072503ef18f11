//! `SshExecutor`: one ssh2 session per host, reused for every command of a run, with host keys
//! verified against known_hosts, key-file or ssh-agent authentication, `sudo -n` for non-root
//! users, per-command timeouts and an optional jump host.
//!
//! ssh2 is blocking, so the session lives in a `std::sync::Mutex` and every call runs on
//! tokio's blocking pool; each command gets its own channel. Scripts run as
//! `timeout -k 10 T+5 sh -c SCRIPT` (prefixed with `sudo -n` for non-root users): the client
//! gives up at `T` and drops the session, and the host-side `timeout` stops whatever the script
//! left running a few seconds later. Command input (file contents, secrets) travels on the
//! channel's standard input, never on the command line.
//!
//! Through a jump host the executor opens a session to the bastion, asks it for a
//! `direct-tcpip` channel to the target and pumps that channel to one end of a Unix socket
//! pair; the target's session runs its handshake over the other end. Both host keys are
//! checked.

use async_trait::async_trait;
use base64::Engine as _;
use kbz_core::config::Config;
use kbz_core::shell::quote;
use kbz_core::{Cmd, Connector, ExecError, Executor, Host, Output};
use ssh2::{CheckResult, KnownHostFileKind, MethodType, Session};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::invoke::{describe, invocation};

/// libssh2's `LIBSSH2_ERROR_TIMEOUT`.
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
/// libssh2's `LIBSSH2_ERROR_FILE` (a key file it cannot read or parse).
const LIBSSH2_ERROR_FILE: i32 = -16;
/// Extra seconds the host-side `timeout` waits past the client's deadline.
const REMOTE_TIMEOUT_GRACE: u64 = 5;

/// A bastion that forwards connections to the hosts (`[ssh] jump_host = "user@host:port"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    /// SSH user on the bastion (default `root`).
    pub user: String,
    /// Bastion address or DNS name.
    pub host: String,
    /// SSH port on the bastion (default 22).
    pub port: u16,
}

impl JumpHost {
    /// Parses `user@host:port`; the user defaults to `root` and the port to 22. IPv6
    /// addresses with a port are written `[2001:db8::1]:22`.
    pub fn parse(spec: &str) -> Result<Self, ExecError> {
        let bad = |reason: &str| ExecError::Jump {
            jump: spec.to_string(),
            host: "any host".into(),
            reason: format!("{reason}; expected user@host:port"),
        };
        let s = spec.trim();
        if s.is_empty() || s.chars().any(char::is_whitespace) {
            return Err(bad("the value is empty or contains spaces"));
        }
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) if !u.is_empty() => (u.to_string(), r),
            Some(_) => return Err(bad("the user before @ is empty")),
            None => ("root".to_string(), s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("missing ] after an IPv6 address"))?;
            match after {
                "" => (h.to_string(), 22),
                p => (
                    h.to_string(),
                    p.strip_prefix(':')
                        .and_then(|p| p.parse::<u16>().ok())
                        .filter(|p| *p != 0)
                        .ok_or_else(|| bad("bad port"))?,
                ),
            }
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':').unwrap_or((rest, "22"));
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?;
            (h.to_string(), port)
        } else {
            (rest.to_string(), 22)
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        Ok(JumpHost { user, host, port })
    }
}

impl std::fmt::Display for JumpHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// How to reach and authenticate to hosts. User and port come from each inventory [`Host`].
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Private key file (not protected by a passphrase); ssh-agent is used when `None`.
    pub key: Option<PathBuf>,
    /// The ssh-agent socket; `None` uses `SSH_AUTH_SOCK` (read by libssh2).
    pub agent_socket: Option<PathBuf>,
    /// known_hosts file every host key (bastion included) is checked against.
    pub known_hosts: PathBuf,
    /// Record the key of a host missing from known_hosts instead of refusing it (E015).
    /// A key that differs from a recorded one is refused either way (E014).
    pub accept_new_host_keys: bool,
    /// TCP connect, and each step of the SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Default per-command timeout (a [`Cmd`] may set its own).
    pub command_timeout: Duration,
    /// Optional bastion.
    pub jump: Option<JumpHost>,
    /// Run commands through `sudo -n` when the SSH user is not root.
    pub sudo: bool,
}

impl SshOptions {
    /// Options with the given known_hosts file and the defaults of `[timeouts]`: agent
    /// authentication, new host keys refused, sudo for non-root users, no jump host.
    pub fn new(known_hosts: impl Into<PathBuf>) -> Self {
        let t = kbz_core::config::Timeouts::default();
        SshOptions {
            key: None,
            agent_socket: None,
            known_hosts: known_hosts.into(),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(t.connect),
            command_timeout: Duration::from_secs(t.command),
            jump: None,
            sudo: true,
        }
    }

    /// Options from `[ssh]` and `[timeouts]` of kbz.toml, with `~` expanded from `HOME`;
    /// known_hosts defaults to `~/.ssh/known_hosts`. Fails (E018) on a malformed jump host.
    pub fn from_config(cfg: &Config) -> Result<Self, ExecError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::from_config_with_home(cfg, home.as_deref())
    }

    fn from_config_with_home(cfg: &Config, home: Option<&Path>) -> Result<Self, ExecError> {
        let known_hosts = cfg
            .ssh
            .known_hosts
            .as_deref()
            .unwrap_or("~/.ssh/known_hosts");
        let mut o = SshOptions::new(expand_tilde(known_hosts, home));
        o.key = cfg.ssh.key.as_deref().map(|k| expand_tilde(k, home));
        o.jump = cfg
            .ssh
            .jump_host
            .as_deref()
            .filter(|j| !j.trim().is_empty())
            .map(JumpHost::parse)
            .transpose()?;
        o.connect_timeout = Duration::from_secs(cfg.timeouts.connect.max(1));
        o.command_timeout = Duration::from_secs(cfg.timeouts.command.max(1));
        Ok(o)
    }

    /// Sets the private key file.
    pub fn key(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(path.into());
        self
    }

    /// Sets the ssh-agent socket.
    pub fn agent_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent_socket = Some(path.into());
        self
    }

    /// Accepts and records keys of hosts missing from known_hosts.
    pub fn accept_new_host_keys(mut self, yes: bool) -> Self {
        self.accept_new_host_keys = yes;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets the default command timeout.
    pub fn command_timeout(mut self, t: Duration) -> Self {
        self.command_timeout = t;
        self
    }

    /// Sets the jump host.
    pub fn jump(mut self, jump: JumpHost) -> Self {
        self.jump = Some(jump);
        self
    }

    /// Enables or disables `sudo -n` for non-root users.
    pub fn sudo(mut self, yes: bool) -> Self {
        self.sudo = yes;
        self
    }
}

/// Expands a leading `~` or `~/` with `home`; other paths are returned as they are.
fn expand_tilde(path: &str, home: Option<&Path>) -> PathBuf {
    match (path, home) {
        ("~", Some(h)) => h.to_path_buf(),
        (p, Some(h)) if p.starts_with("~/") => h.join(&p[2..]),
        (p, _) => PathBuf::from(p),
    }
}

/// One SSH server to talk to: the target or the bastion.
#[derive(Debug, Clone)]
struct Endpoint {
    addr: String,
    port: u16,
    user: String,
}

impl Endpoint {
    /// The name OpenSSH records in known_hosts: `addr` on port 22, `[addr]:port` otherwise.
    fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.addr.clone()
        } else {
            format!("[{}]:{}", self.addr, self.port)
        }
    }
}

/// An established session; the session is dropped before the jump bridge it runs over.
struct Conn {
    session: Session,
    _bridge: Option<Bridge>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.session.set_timeout(1000);
        let _ =
            self.session
                .disconnect(Some(ssh2::DisconnectCode::ByApplication), "kbz done", None);
    }
}

struct Inner {
    name: String,
    target: Endpoint,
    opts: SshOptions,
    conn: Mutex<Option<Conn>>,
    round_trips: AtomicU64,
    connections: AtomicU64,
}

/// Runs commands on one host over SSH (see the module documentation).
pub struct SshExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SshExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshExecutor")
            .field("name", &self.inner.name)
            .field("target", &self.inner.target)
            .field("jump", &self.inner.opts.jump)
            .field("round_trips", &self.round_trips())
            .field("connections", &self.connections())
            .finish()
    }
}

impl SshExecutor {
    /// Connects to `host` (its IP, `ssh_user` and `ssh_port`) and authenticates. The session
    /// is kept for every later command.
    pub async fn connect(host: &Host, opts: SshOptions) -> Result<Self, ExecError> {
        let inner = Arc::new(Inner {
            name: host.hostname.clone(),
            target: Endpoint {
                addr: host.ip.to_string(),
                port: host.ssh_port,
                user: host.ssh_user.clone(),
            },
            opts,
            conn: Mutex::new(None),
            round_trips: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let worker = inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = worker.lock();
            if guard.is_none() {
                *guard = Some(worker.open()?);
            }
            Ok::<(), ExecError>(())
        })
        .await
        .map_err(|e| ExecError::Session {
            host: host.hostname.clone(),
            reason: format!("connection task failed: {e}"),
        })??;
        Ok(SshExecutor { inner })
    }

    /// How many SSH sessions this executor has opened: 1 for a healthy run. A session is
    /// reopened only after a timeout or a broken connection.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Closes the session now (it is reopened if the executor is used again).
    pub async fn close(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            inner.lock().take();
        })
        .await;
    }
}

#[async_trait]
impl Executor for SshExecutor {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let cmd = cmd.clone();
        tokio::task::spawn_blocking(move || inner.run(&cmd))
            .await
            .map_err(|e| ExecError::Session {
                host: self.inner.name.clone(),
                reason: format!("command task failed: {e}"),
            })?
    }

    fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }
}

/// Why a command did not produce an [`Output`].
enum Failure {
    /// The channel could not be opened: nothing ran, the session is probably stale.
    ChannelOpen(String),
    /// The deadline passed.
    Timeout,
    /// The session broke while the command ran.
    Broken(String),
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(|poisoned| {
            // A panic while holding the session leaves it in an unknown state: drop it.
            let mut g = poisoned.into_inner();
            *g = None;
            g
        })
    }

    fn open(&self) -> Result<Conn, ExecError> {
        let conn = open(&self.target, &self.opts)?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(host = %self.name, addr = %self.target.addr, port = self.target.port, "SSH session established");
        Ok(conn)
    }

    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let timeout = cmd.timeout.unwrap_or(self.opts.command_timeout);
        let inv = invocation(cmd);
        let use_sudo = self.opts.sudo && self.target.user != "root";
        let line = command_line(&inv.script, timeout, use_sudo);
        let mut guard = self.lock();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if guard.is_none() {
                *guard = Some(self.open()?);
            }
            let Some(conn) = guard.as_ref() else {
                continue;
            };
            let deadline = Instant::now() + timeout;
            tracing::debug!(host = %self.name, what = %describe(cmd), "run");
            match exec(&conn.session, &line, inv.stdin.as_deref(), deadline) {
                Ok(out) => return self.check_sudo(out, use_sudo),
                Err(failure) => {
                    // Whatever happened, this session is not trusted for another command.
                    *guard = None;
                    match failure {
                        Failure::ChannelOpen(_) if attempt == 1 => continue,
                        Failure::ChannelOpen(reason) | Failure::Broken(reason) => {
                            return Err(ExecError::Session {
                                host: self.name.clone(),
                                reason,
                            })
                        }
                        Failure::Timeout => {
                            return Err(ExecError::Timeout {
                                host: self.name.clone(),
                                secs: timeout.as_secs(),
                                what: describe(cmd),
                            })
                        }
                    }
                }
            }
        }
    }

    /// Turns sudo's own refusals into [`ExecError::Sudo`]; other failures stay outputs.
    fn check_sudo(&self, out: Output, use_sudo: bool) -> Result<Output, ExecError> {
        if !use_sudo || out.success() {
            return Ok(out);
        }
        let reason = sudo_refusal(&out);
        match reason {
            Some(r) => Err(ExecError::Sudo {
                host: self.name.clone(),
                user: self.target.user.clone(),
                reason: r.into(),
            }),
            None => Ok(out),
        }
    }
}

/// Why sudo refused to run the script, judged from the output of a failed command. sudo speaks
/// first (before the script runs), possibly after warnings of its own such as "unable to
/// resolve host", so only the leading lines that mention sudo count.
fn sudo_refusal(out: &Output) -> Option<&'static str> {
    let stderr = out.stderr_str();
    let said = |text: &str| {
        stderr
            .lines()
            .take_while(|l| l.contains("sudo"))
            .any(|l| l.contains(text))
    };
    if said("a password is required") || said("a terminal is required") {
        Some("a password is required (kbz runs sudo -n and never types one)")
    } else if said("is not in the sudoers file") {
        Some("the user is not in the sudoers file")
    } else if said("is not allowed to execute") {
        Some("sudoers does not allow this user to run sh as root")
    } else if out.status == 127 && said("sudo: ") && said("not found") {
        Some("sudo is not installed on the host")
    } else {
        None
    }
}

/// The exec request: the script under `timeout`, through `sudo -n` when needed.
fn command_line(script: &str, timeout: Duration, sudo: bool) -> String {
    let secs = timeout.as_secs().saturating_add(REMOTE_TIMEOUT_GRACE);
    let inner = format!("timeout -k 10 {secs} sh -c {}", quote(script));
    if sudo {
        format!("sudo -n {inner}")
    } else {
        inner
    }
}

/// Bounds the next blocking libssh2 call by the time left before `deadline`.
fn arm(session: &Session, deadline: Instant) -> Result<(), Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Timeout);
    }
    let ms = left.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
    session.set_timeout(ms);
    Ok(())
}

fn ssh_failure(e: ssh2::Error, deadline: Instant) -> Failure {
    if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) || Instant::now() >= deadline {
        Failure::Timeout
    } else {
        Failure::Broken(e.message().to_string())
    }
}

/// libssh2's `LIBSSH2_ERROR_EAGAIN`.
const LIBSSH2_ERROR_EAGAIN: i32 = -37;

/// Runs one command on a new channel. Opening the channel and the exec request block (bounded
/// by the deadline); then the session turns non-blocking and one loop writes stdin (then EOF)
/// while draining stdout and stderr as they come, so that neither a large input nor a flood on
/// either output stream can fill an SSH window and stall the command.
fn exec(
    session: &Session,
    line: &str,
    stdin: Option<&[u8]>,
    deadline: Instant,
) -> Result<Output, Failure> {
    arm(session, deadline)?;
    let mut ch = session.channel_session().map_err(|e| {
        if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) {
            Failure::Timeout
        } else {
            Failure::ChannelOpen(e.message().to_string())
        }
    })?;
    arm(session, deadline)?;
    ch.exec(line).map_err(|e| ssh_failure(e, deadline))?;
    session.set_blocking(false);
    let result = pump_channel(&mut ch, stdin.unwrap_or(&[]), deadline);
    session.set_blocking(true);
    result
}

fn pump_channel(
    ch: &mut ssh2::Channel,
    stdin: &[u8],
    deadline: Instant,
) -> Result<Output, Failure> {
    let broken = |e: std::io::Error| Failure::Broken(e.to_string());
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut written = 0;
    let mut eof_sent = false;
    let (mut out_done, mut err_done) = (false, false);
    let mut idle = Backoff::new();
    while !(out_done && err_done) {
        let mut progress = false;
        if !eof_sent && written < stdin.len() {
            let end = stdin.len().min(written + 32 * 1024);
            match ch.write(&stdin[written..end]) {
                Ok(n) => {
                    written += n;
                    progress |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                // The command may have exited without reading its input (sudo refusing, a
                // failing script): stop writing and collect what it said.
                Err(_) => written = stdin.len(),
            }
        }
        if !eof_sent && written >= stdin.len() {
            match ch.send_eof() {
                Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN) => {}
                _ => {
                    eof_sent = true;
                    progress = true;
                }
            }
        }
        if !out_done {
            match ch.read(&mut buf) {
                Ok(0) => out_done = ch.eof(),
                Ok(n) => {
                    stdout.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(broken(e)),
            }
        }
        if !err_done {
            match ch.stderr().read(&mut buf) {
                Ok(0) => err_done = ch.eof(),
                Ok(n) => {
                    stderr.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(broken(e)),
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Timeout);
        }
        idle.wait_unless(progress);
    }
    loop {
        match ch.wait_close() {
            Ok(()) => break,
            Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN) => {}
            Err(e) => return Err(Failure::Broken(e.message().to_string())),
        }
        if Instant::now() >= deadline {
            return Err(Failure::Timeout);
        }
        idle.wait_unless(false);
    }
    let signal = ch
        .exit_signal()
        .map_err(|e| Failure::Broken(e.message().to_string()))?
        .exit_signal;
    let status = match signal {
        Some(_) => -1,
        None => ch
            .exit_status()
            .map_err(|e| Failure::Broken(e.message().to_string()))?,
    };
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Sleeps between polls of non-blocking sockets when nothing moved: from 50 µs, doubling up
/// to 5 ms, back to the start after any progress. A busy transfer adds little latency and an
/// idle wait costs little CPU.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_micros(50);
    const MAX: Duration = Duration::from_millis(5);

    fn new() -> Self {
        Backoff { next: Self::MIN }
    }

    fn wait_unless(&mut self, progress: bool) {
        if progress {
            self.next = Self::MIN;
        } else {
            std::thread::sleep(self.next);
            self.next = (self.next * 2).min(Self::MAX);
        }
    }
}

/// Opens an authenticated session to the target, through the jump host when one is set.
fn open(target: &Endpoint, opts: &SshOptions) -> Result<Conn, ExecError> {
    let Some(jump) = &opts.jump else {
        let tcp = tcp_connect(target, opts.connect_timeout)?;
        let session = establish(tcp, target, opts)?;
        return Ok(Conn {
            session,
            _bridge: None,
        });
    };
    let bastion_ep = Endpoint {
        addr: jump.host.clone(),
        port: jump.port,
        user: jump.user.clone(),
    };
    let tcp = tcp_connect(&bastion_ep, opts.connect_timeout)?;
    let bastion = establish(tcp, &bastion_ep, opts)?;
    let jump_err = |reason: String| ExecError::Jump {
        jump: jump.to_string(),
        host: format!("{}:{}", target.addr, target.port),
        reason,
    };
    bastion.set_timeout(timeout_ms(opts.connect_timeout));
    let channel = bastion
        .channel_direct_tcpip(&target.addr, target.port, None)
        .map_err(|e| {
            jump_err(format!(
                "the bastion refused to forward the connection: {}",
                e.message()
            ))
        })?;
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| jump_err(format!("cannot create a socket pair: {e}")))?;
    let bridge = Bridge::spawn(bastion, channel, theirs)
        .map_err(|e| jump_err(format!("cannot start the forwarding thread: {e}")))?;
    let session = establish(ours, target, opts)?;
    Ok(Conn {
        session,
        _bridge: Some(bridge),
    })
}

fn timeout_ms(t: Duration) -> u32 {
    t.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

fn tcp_connect(ep: &Endpoint, timeout: Duration) -> Result<TcpStream, ExecError> {
    let unreachable = |reason: String| ExecError::Unreachable {
        host: ep.addr.clone(),
        port: ep.port,
        reason,
    };
    let addrs: Vec<_> = (ep.addr.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve the address: {e}")))?
        .collect();
    let mut last = String::from("the name resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(last))
}

/// Handshake, host-key check and authentication over an already connected stream.
fn establish<S: std::os::fd::AsRawFd + 'static>(
    stream: S,
    ep: &Endpoint,
    opts: &SshOptions,
) -> Result<Session, ExecError> {
    let handshake_err = |reason: String| ExecError::Handshake {
        host: ep.known_hosts_name(),
        reason,
    };
    let mut session =
        Session::new().map_err(|e| handshake_err(format!("libssh2: {}", e.message())))?;
    session.set_tcp_stream(stream);
    session.set_timeout(timeout_ms(opts.connect_timeout));
    let known = KnownHostsFile::load(&opts.known_hosts, &ep.known_hosts_name())?;
    if let Some(prefs) = known.host_key_preferences(&session, &ep.known_hosts_name()) {
        // Unsupported names are dropped by libssh2; on any error keep its defaults.
        let _ = session.method_pref(MethodType::HostKey, &prefs);
    }
    session
        .handshake()
        .map_err(|e| handshake_err(e.message().to_string()))?;
    known.verify(&session, ep, opts)?;
    authenticate(&session, ep, opts)?;
    session.set_timeout(0);
    Ok(session)
}

fn authenticate(session: &Session, ep: &Endpoint, opts: &SshOptions) -> Result<(), ExecError> {
    let auth_err = |reason: String| ExecError::Auth {
        host: ep.addr.clone(),
        user: ep.user.clone(),
        reason,
    };
    if let Some(key) = &opts.key {
        check_key_file(key)?;
        session
            .userauth_pubkey_file(&ep.user, None, key, None)
            .map_err(|e| {
                if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_FILE) {
                    ExecError::Key {
                        path: key.display().to_string(),
                        reason: e.message().to_string(),
                    }
                } else {
                    auth_err(format!(
                        "the server rejected the key {}: {}",
                        key.display(),
                        e.message()
                    ))
                }
            })?;
    } else {
        let mut agent = session
            .agent()
            .map_err(|e| auth_err(format!("cannot use ssh-agent: {}", e.message())))?;
        if let Some(sock) = &opts.agent_socket {
            agent
                .set_identity_path(sock)
                .map_err(|e| auth_err(format!("bad agent socket path: {}", e.message())))?;
        }
        agent.connect().map_err(|e| {
            auth_err(format!(
                "no key file is configured ([ssh] key) and ssh-agent is not reachable (is SSH_AUTH_SOCK set?): {}",
                e.message()
            ))
        })?;
        agent
            .list_identities()
            .map_err(|e| auth_err(format!("cannot list ssh-agent keys: {}", e.message())))?;
        let ids = agent
            .identities()
            .map_err(|e| auth_err(format!("cannot list ssh-agent keys: {}", e.message())))?;
        if ids.is_empty() {
            let _ = agent.disconnect();
            return Err(auth_err("ssh-agent holds no keys (ssh-add -l)".into()));
        }
        let accepted = ids.iter().any(|id| agent.userauth(&ep.user, id).is_ok());
        let _ = agent.disconnect();
        if !accepted {
            return Err(auth_err(format!(
                "the server accepted none of the {} key(s) in ssh-agent",
                ids.len()
            )));
        }
    }
    if session.authenticated() {
        Ok(())
    } else {
        Err(auth_err(
            "the server did not complete authentication".into(),
        ))
    }
}

/// Rejects key files libssh2 would fail on with a vague message: missing, public halves,
/// passphrase-protected keys. Never shows any of the file's content.
fn check_key_file(path: &Path) -> Result<(), ExecError> {
    let key_err = |reason: String| ExecError::Key {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| key_err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("PRIVATE KEY-----") {
        return Err(key_err(
            "the file is not a private key (is it the .pub file?)".into(),
        ));
    }
    if text.contains("ENCRYPTED") || openssh_key_is_encrypted(&text) {
        return Err(key_err(
            "the key is protected by a passphrase; load it into ssh-agent (ssh-add) and remove `key` from [ssh]".into(),
        ));
    }
    Ok(())
}

/// True when an `OPENSSH PRIVATE KEY` names a cipher other than `none`.
fn openssh_key_is_encrypted(text: &str) -> bool {
    let Some(start) = text.find("-----BEGIN OPENSSH PRIVATE KEY-----") else {
        return false;
    };
    let body = &text[start + "-----BEGIN OPENSSH PRIVATE KEY-----".len()..];
    let body = body.split("-----END").next().unwrap_or("");
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let Some(rest) = raw.strip_prefix(b"openssh-key-v1\0") else {
        return false;
    };
    match read_ssh_string(rest) {
        Some((cipher, _)) => cipher != b"none",
        None => false,
    }
}

/// Reads one SSH wire-format string (u32 length, bytes).
fn read_ssh_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let s = data.get(4..4 + len)?;
    Some((s, &data[4 + len..]))
}

/// Serializes appends to known_hosts files from parallel connections.
static KNOWN_HOSTS_APPEND: Mutex<()> = Mutex::new(());

/// The entries of a known_hosts file that libssh2 understands, plus revoked keys.
///
/// Lines libssh2 cannot parse (certificate authorities, security-key types) are skipped rather
/// than failing the whole file; a host known only through such a line counts as unknown.
struct KnownHostsFile {
    path: PathBuf,
    entries: Vec<String>,
    revoked: Vec<String>,
}

impl KnownHostsFile {
    fn load(path: &Path, host: &str) -> Result<Self, ExecError> {
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(ExecError::File {
                    host: host.to_string(),
                    path: path.display().to_string(),
                    reason: format!("cannot read known_hosts: {e}"),
                })
            }
        };
        let mut entries = Vec::new();
        let mut revoked = Vec::new();
        let scratch = Session::new().ok();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('@') {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.first() == Some(&"@revoked") {
                    if let Some(key) = f.get(3) {
                        revoked.push((*key).to_string());
                    }
                }
                continue;
            }
            let parses = scratch
                .as_ref()
                .and_then(|s| s.known_hosts().ok())
                .map(|mut kh| kh.read_str(line, KnownHostFileKind::OpenSSH).is_ok())
                .unwrap_or(false);
            if parses {
                entries.push(line.to_string());
            }
        }
        Ok(KnownHostsFile {
            path: path.to_path_buf(),
            entries,
            revoked,
        })
    }

    /// Host-key algorithms for the handshake: the types recorded for `name` first (so a
    /// server with several keys shows the one we know), then libssh2's others. Host
    /// certificates are left out: they cannot be checked against known_hosts.
    fn host_key_preferences(&self, session: &Session, name: &str) -> Option<String> {
        let supported = session.supported_algs(MethodType::HostKey).ok()?;
        let mut prefs: Vec<String> = Vec::new();
        for line in &self.entries {
            let Ok(mut kh) = session.known_hosts() else {
                continue;
            };
            if kh.read_str(line, KnownHostFileKind::OpenSSH).is_err() {
                continue;
            }
            // A key that cannot match reports Mismatch exactly when the line names this host.
            if !matches!(kh.check(name, b"\0kbz-probe"), CheckResult::Mismatch) {
                continue;
            }
            let Some(key_type) = line.split_whitespace().nth(1) else {
                continue;
            };
            let algs: &[&str] = match key_type {
                "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
                other => &[other][..],
            };
            for a in algs {
                if supported.contains(a) && !prefs.iter().any(|p| p == a) {
                    prefs.push((*a).to_string());
                }
            }
        }
        for a in &supported {
            if !a.contains("-cert-") && !prefs.iter().any(|p| p == a) {
                prefs.push((*a).to_string());
            }
        }
        (!prefs.is_empty()).then(|| prefs.join(","))
    }

    /// Checks the key the server presented; records it when unknown and allowed.
    fn verify(&self, session: &Session, ep: &Endpoint, opts: &SshOptions) -> Result<(), ExecError> {
        let name = ep.known_hosts_name();
        let shown = self.path.display().to_string();
        let (key, _) = session.host_key().ok_or_else(|| ExecError::Handshake {
            host: name.clone(),
            reason: "the server presented no host key".into(),
        })?;
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
        if self.revoked.contains(&key_b64) {
            return Err(ExecError::HostKeyMismatch {
                host: name,
                known_hosts: shown,
            });
        }
        let mut kh = session.known_hosts().map_err(|e| ExecError::Handshake {
            host: name.clone(),
            reason: format!("libssh2 known_hosts: {}", e.message()),
        })?;
        for line in &self.entries {
            let _ = kh.read_str(line, KnownHostFileKind::OpenSSH);
        }
        match kh.check(&name, key) {
            CheckResult::Match => Ok(()),
            CheckResult::Mismatch => Err(ExecError::HostKeyMismatch {
                host: name,
                known_hosts: shown,
            }),
            CheckResult::NotFound if opts.accept_new_host_keys => {
                append_known_host(&self.path, &name, key)?;
                tracing::info!(host = %name, known_hosts = %shown, "recorded a new host key");
                Ok(())
            }
            CheckResult::NotFound => Err(ExecError::HostKeyUnknown {
                host: name,
                known_hosts: shown,
            }),
            CheckResult::Failure => Err(ExecError::Handshake {
                host: name,
                reason: format!("libssh2 could not check the host key against {shown}"),
            }),
        }
    }
}

/// Appends `name keytype base64` to known_hosts, creating the file (0600) and its directory
/// (0700) when missing. Other lines are never rewritten.
fn append_known_host(path: &Path, name: &str, key: &[u8]) -> Result<(), ExecError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let file_err = |reason: String| ExecError::File {
        host: name.to_string(),
        path: path.display().to_string(),
        reason,
    };
    let key_type = read_ssh_string(key)
        .and_then(|(t, _)| std::str::from_utf8(t).ok())
        .ok_or_else(|| file_err("the host key has no type name".into()))?
        .to_string();
    let line = format!(
        "{name} {key_type} {}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let _guard = KNOWN_HOSTS_APPEND.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| file_err(format!("cannot create the directory: {e}")))?;
        }
    }
    let needs_newline = match std::fs::read(path) {
        Ok(b) => !b.is_empty() && !b.ends_with(b"\n"),
        Err(_) => false,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_err(e.to_string()))?;
    let text = if needs_newline {
        format!("\n{line}")
    } else {
        line
    };
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| file_err(e.to_string()))
}

/// Pumps bytes between a bastion's direct-tcpip channel and one end of a Unix socket pair.
struct Bridge {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bridge {
    fn spawn(bastion: Session, channel: ssh2::Channel, local: UnixStream) -> std::io::Result<Self> {
        local.set_nonblocking(true)?;
        bastion.set_blocking(false);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kbz-ssh-jump".into())
            .spawn(move || pump(bastion, channel, local, &flag))?;
        Ok(Bridge {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

/// The bridge loop. Both sides are non-blocking; when neither moves, the thread sleeps with a
/// [`Backoff`].
fn pump(bastion: Session, mut channel: ssh2::Channel, mut local: UnixStream, stop: &AtomicBool) {
    let mut to_remote: Vec<u8> = Vec::new();
    let mut to_local: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut local_eof = false;
    let mut remote_eof = false;
    let mut idle = Backoff::new();
    while !stop.load(Ordering::Relaxed) {
        let mut progress = false;
        if to_remote.is_empty() && !local_eof {
            match local.read(&mut buf) {
                Ok(0) => {
                    local_eof = true;
                    progress = true;
                }
                Ok(n) => {
                    to_remote.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if !to_remote.is_empty() {
            match channel.write(&to_remote) {
                Ok(n) => {
                    to_remote.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if to_local.is_empty() && !remote_eof {
            match channel.read(&mut buf) {
                Ok(0) => {
                    if channel.eof() {
                        remote_eof = true;
                        progress = true;
                    }
                }
                Ok(n) => {
                    to_local.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if !to_local.is_empty() {
            match local.write(&to_local) {
                Ok(n) => {
                    to_local.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if local_eof && to_remote.is_empty() {
            // The target's session is gone.
            break;
        }
        if remote_eof && to_local.is_empty() {
            let _ = local.shutdown(std::net::Shutdown::Write);
            break;
        }
        idle.wait_unless(progress);
    }
    drop(local);
    bastion.set_blocking(true);
    bastion.set_timeout(1000);
    let _ = channel.close();
    drop(channel);
    let _ = bastion.disconnect(Some(ssh2::DisconnectCode::ByApplication), "kbz done", None);
}

/// Opens [`SshExecutor`]s for inventory hosts with one set of [`SshOptions`].
#[derive(Debug, Clone)]
pub struct SshConnector {
    opts: SshOptions,
}

impl SshConnector {
    /// A connector using `opts` for every host.
    pub fn new(opts: SshOptions) -> Self {
        SshConnector { opts }
    }

    /// The options used for every host.
    pub fn options(&self) -> &SshOptions {
        &self.opts
    }
}

#[async_trait]
impl Connector for SshConnector {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn Executor>, ExecError> {
        Ok(Arc::new(
            SshExecutor::connect(host, self.opts.clone()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_host_specs() {
        let j = JumpHost::parse("ops@bastion.example.com:2222").expect("parse");
        assert_eq!(
            j,
            JumpHost {
                user: "ops".into(),
                host: "bastion.example.com".into(),
                port: 2222
            }
        );
        assert_eq!(j.to_string(), "ops@bastion.example.com:2222");
        let j = JumpHost::parse("10.0.0.5").expect("parse");
        assert_eq!((j.user.as_str(), j.port), ("root", 22));
        let j = JumpHost::parse("me@[2001:db8::1]:23").expect("parse");
        assert_eq!((j.host.as_str(), j.port), ("2001:db8::1", 23));
        assert_eq!(j.to_string(), "me@[2001:db8::1]:23");
        assert_eq!(JumpHost::parse("2001:db8::1").expect("parse").port, 22);
        for bad in [
            "", "a b", "@h", "h:x", "h:0", "h:70000", "u@", "[::1", "[::1]x",
        ] {
            let err = JumpHost::parse(bad).expect_err(bad);
            assert_eq!(
                kbz_errors::HasCode::code(&err),
                kbz_errors::Code::E018,
                "{bad}"
            );
        }
    }

    #[test]
    fn options_from_config_expand_home() {
        let mut cfg = Config::default();
        let home = Path::new("/home/op");
        let o = SshOptions::from_config_with_home(&cfg, Some(home)).expect("options");
        assert_eq!(o.known_hosts, PathBuf::from("/home/op/.ssh/known_hosts"));
        assert_eq!(o.key, None);
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.command_timeout, Duration::from_secs(900));
        assert!(!o.accept_new_host_keys && o.sudo && o.jump.is_none());

        cfg.ssh.key = Some("~/.ssh/id_ed25519".into());
        cfg.ssh.known_hosts = Some("/etc/kbz/known_hosts".into());
        cfg.ssh.jump_host = Some("ops@bastion:2222".into());
        cfg.timeouts.connect = 3;
        let o = SshOptions::from_config_with_home(&cfg, Some(home)).expect("options");
        assert_eq!(o.key, Some(PathBuf::from("/home/op/.ssh/id_ed25519")));
        assert_eq!(o.known_hosts, PathBuf::from("/etc/kbz/known_hosts"));
        assert_eq!(o.jump.as_ref().map(|j| j.port), Some(2222));
        assert_eq!(o.connect_timeout, Duration::from_secs(3));

        cfg.ssh.jump_host = Some("ops@bastion:notaport".into());
        assert!(SshOptions::from_config_with_home(&cfg, Some(home)).is_err());
        assert_eq!(expand_tilde("~", Some(home)), PathBuf::from("/home/op"));
        assert_eq!(expand_tilde("~x/y", Some(home)), PathBuf::from("~x/y"));
        assert_eq!(expand_tilde("~/k", None), PathBuf::from("~/k"));
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            command_line("echo 'hi'", Duration::from_secs(10), false),
            "timeout -k 10 15 sh -c 'echo '\\''hi'\\'''"
        );
        assert!(command_line("id", Duration::from_secs(1), true).starts_with("sudo -n timeout"));
    }

    #[test]
    fn sudo_refusals_are_recognized_from_captured_stderr() {
        let out = |status, stderr: &str| Output {
            status,
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let cases = [
            (1, "sudo: a password is required\n", Some("password")),
            (
                1,
                "sudo: unable to resolve host db1: Name or service not known\nsudo: a password is required\n",
                Some("password"),
            ),
            (
                1,
                "deploy is not in the sudoers file.  This incident will be reported.\n",
                Some("sudoers"),
            ),
            (1, "sudo: deploy is not in the sudoers file.\n", Some("sudoers")),
            (127, "bash: line 1: sudo: command not found\n", Some("not installed")),
            (127, "sh: 1: sudo: not found\n", Some("not installed")),
            // The script's own failures stay outputs, even when they mention sudo later on.
            (1, "E: Unable to locate package x\nsudo: a password is required\n", None),
            (127, "sh: 1: frobnicate: not found\n", None),
        ];
        for (status, stderr, want) in cases {
            let got = sudo_refusal(&out(status, stderr));
            match want {
                Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{stderr:?} -> {got:?}"),
                None => assert_eq!(got, None, "{stderr:?}"),
            }
        }
    }

    #[test]
    fn known_hosts_names_follow_openssh() {
        let ep = |addr: &str, port| Endpoint {
            addr: addr.into(),
            port,
            user: "root".into(),
        };
        assert_eq!(ep("10.0.0.1", 22).known_hosts_name(), "10.0.0.1");
        assert_eq!(ep("10.0.0.1", 2222).known_hosts_name(), "[10.0.0.1]:2222");
        assert_eq!(ep("::1", 22).known_hosts_name(), "::1");
        assert_eq!(ep("::1", 2222).known_hosts_name(), "[::1]:2222");
    }

    #[test]
    fn passphrase_protected_openssh_keys_are_detected() {
        // Header of an OpenSSH key encrypted with aes256-ctr (no secret material).
        let mut blob = b"openssh-key-v1\0".to_vec();
        blob.extend_from_slice(&10u32.to_be_bytes());
        blob.extend_from_slice(b"aes256-ctr");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
        let text = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{b64}\n-----END OPENSSH PRIVATE KEY-----\n"
        );
        assert!(openssh_key_is_encrypted(&text));
        let mut plain = b"openssh-key-v1\0".to_vec();
        plain.extend_from_slice(&4u32.to_be_bytes());
        plain.extend_from_slice(b"none");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
        let text = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{b64}\n-----END OPENSSH PRIVATE KEY-----\n"
        );
        assert!(!openssh_key_is_encrypted(&text));
    }
}
