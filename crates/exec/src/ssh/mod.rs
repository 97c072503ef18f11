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
//! checked. [`Tunnel`] uses the same bastion for plain TCP: a local port whose connections
//! the bastion carries to one service address (kbz-failover's workload behind a bastion).

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

use crate::invoke::{describe, finish, invocation};

/// libssh2's `LIBSSH2_ERROR_TIMEOUT`.
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
/// libssh2's `LIBSSH2_ERROR_FILE` (a key file it cannot read or parse).
const LIBSSH2_ERROR_FILE: i32 = -16;
/// Extra seconds the host-side `timeout` waits past the client's deadline.
const REMOTE_TIMEOUT_GRACE: u64 = 5;

mod auth;
mod jump;
mod known_hosts;
mod options;
mod session;
#[cfg(test)]
mod tests;
mod tunnel;

use auth::*;
pub use jump::JumpHost;
use jump::*;
pub use known_hosts::fingerprint;
use known_hosts::*;
pub use options::{KeyRecorded, RecordedKey, SshOptions, DEFAULT_KEEPALIVE, DEFAULT_MAX_OUTPUT};
pub use session::KEEPALIVE_COUNT;
use session::*;
pub use tunnel::Tunnel;

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
    /// The command printed more than the cap on this stream.
    TooLarge(&'static str),
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
            let limits = Limits {
                max_output: self.opts.max_output,
                keepalive: self.opts.keepalive,
            };
            match exec(
                &conn.session,
                &line,
                inv.stdin.as_deref(),
                deadline,
                &limits,
            ) {
                Ok(out) => return finish(&self.name, cmd, self.check_sudo(out, use_sudo)?),
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
                        Failure::TooLarge(stream) => {
                            return Err(ExecError::OutputTooLarge {
                                host: self.name.clone(),
                                stream,
                                limit: self.opts.max_output,
                                what: describe(cmd),
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

/// Opens [`SshExecutor`]s for inventory hosts with one set of [`SshOptions`].
///
/// The connector an embedding tool hands to `kbz_core::Engine::new`: options from kbz.toml's
/// `[ssh]` table (key, known_hosts, jump host, timeouts), nothing contacted until a run.
///
/// ```
/// use kbz_core::{Config, Connector};
/// use kbz_exec::{SshConnector, SshOptions};
/// use std::sync::Arc;
///
/// let config = Config::parse("kbz.toml", "[ssh]\nkey = \"/etc/my-tool/id_ed25519\"\nknown_hosts = \"/etc/my-tool/known_hosts\"\n")
///     .expect("valid");
/// let opts = SshOptions::from_config(&config).expect("no jump host to parse");
/// assert!(!opts.accept_new_host_keys, "unknown host keys are refused by default (E015)");
/// let connector: Arc<dyn Connector> = Arc::new(SshConnector::new(opts));
/// # let _ = connector;
/// ```
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
