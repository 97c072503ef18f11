//! Jump hosts: the `[ssh] jump_host` spec and the bridge that pumps a bastion's
//! `direct-tcpip` channel to a local socket pair the target session runs over. The same
//! [`pump`] carries the connections of a [`super::Tunnel`].

use super::*;

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

/// Pumps bytes between a bastion's direct-tcpip channel and one end of a Unix socket pair.
pub(super) struct Bridge {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bridge {
    pub(super) fn spawn(
        bastion: Session,
        channel: ssh2::Channel,
        local: UnixStream,
    ) -> std::io::Result<Self> {
        local.set_nonblocking(true)?;
        bastion.set_blocking(false);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kbz-ssh-jump".into())
            .spawn(move || pump(bastion, channel, local, &flag, EndOfLocal::Close))?;
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

pub(super) fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

/// The local end of a bridged channel: a Unix socket (a target's SSH session over the jump
/// host) or a TCP connection accepted by a tunnel.
pub(super) trait LocalEnd: Read + Write + Send + 'static {
    /// Shuts down the writing half (the remote side sent EOF).
    fn shutdown_write(&self);
}

impl LocalEnd for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl LocalEnd for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// What an end of file from the local side means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndOfLocal {
    /// The local side is gone (the target's session was dropped): stop at once.
    Close,
    /// A half-close (a TCP client's `shutdown(Write)`): send EOF on the channel and keep
    /// carrying the remote side's bytes until it ends too.
    HalfClose,
}

/// The bridge loop. Both sides are non-blocking; when neither moves, the thread sleeps with a
/// [`Backoff`]. It ends when both sides are done (see [`EndOfLocal`]), on an error of either
/// side, or when `stop` is set; then the channel is closed and the bastion session
/// disconnected.
pub(super) fn pump<L: LocalEnd>(
    bastion: Session,
    mut channel: ssh2::Channel,
    mut local: L,
    stop: &AtomicBool,
    at_local_eof: EndOfLocal,
) {
    let mut to_remote: Vec<u8> = Vec::new();
    let mut to_local: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut local_eof = false;
    let mut remote_eof = false;
    let mut eof_sent = false;
    let mut local_shut = false;
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
            if at_local_eof == EndOfLocal::Close {
                // The target's session is gone.
                break;
            }
            if !eof_sent {
                match channel.send_eof() {
                    Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN) => {}
                    Err(_) => break,
                    Ok(()) => {
                        eof_sent = true;
                        progress = true;
                    }
                }
            }
        }
        if remote_eof && to_local.is_empty() {
            if !local_shut {
                local.shutdown_write();
                local_shut = true;
            }
            if at_local_eof == EndOfLocal::Close || (local_eof && eof_sent) {
                break;
            }
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
