//! `Tunnel`: a local TCP port whose connections the jump host carries to one target address
//! (`ssh -L 127.0.0.1:PORT:target:port bastion`), for controllers that reach service ports
//! (a VIP, a member's PostgreSQL or Redis) only through the bastion.
//!
//! [`Tunnel::open`] authenticates to the bastion once, checking its host key against
//! known_hosts exactly as the executor does, and asks it to forward one connection to the
//! target, so a wrong key, bad credentials or a bastion that refuses forwarding fail there,
//! with the executor's E-codes, before any workload starts. It then listens on
//! `127.0.0.1:0`. Every accepted connection gets its own thread and its own bastion session
//! with one `direct-tcpip` channel to the target, pumped by the bridge loop the jump host
//! uses ([`pump`]): a slow or dead target (a powered-off member) stalls only the connections
//! to it, never the others. The price is one SSH handshake on the bastion per connection,
//! a few milliseconds on a LAN. Dropping the tunnel closes the listener and ends and joins
//! every connection's thread (one still in its handshake within the connect timeout).

use super::*;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// How often the accept loop looks at the stop flag while nobody connects.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// A local port carried through the jump host to `target:port` (see the module
/// documentation).
pub struct Tunnel {
    local: SocketAddr,
    target: String,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    accepted: Arc<AtomicU64>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("local", &self.local)
            .field("target", &self.target)
            .field("accepted", &self.accepted())
            .finish()
    }
}

/// What a connection thread needs: where to go and how to reach the bastion.
#[derive(Clone)]
struct Route {
    bastion: Endpoint,
    jump: String,
    host: String,
    port: u16,
    opts: SshOptions,
}

impl Route {
    fn jump_err(&self, reason: String) -> ExecError {
        ExecError::Jump {
            jump: self.jump.clone(),
            host: net_name(&self.host, self.port),
            reason,
        }
    }

    /// An authenticated bastion session and a `direct-tcpip` channel of it to the target.
    fn channel(&self) -> Result<(Session, ssh2::Channel), ExecError> {
        let tcp = tcp_connect(&self.bastion, self.opts.connect_timeout)?;
        let _ = tune_tcp(&tcp, self.opts.keepalive);
        let session = establish(tcp, &self.bastion, &self.opts)?;
        session.set_timeout(timeout_ms(self.opts.connect_timeout));
        let channel = session
            .channel_direct_tcpip(&self.host, self.port, None)
            .map_err(|e| {
                self.jump_err(format!(
                    "the bastion did not forward a connection to {}: {}",
                    net_name(&self.host, self.port),
                    e.message()
                ))
            })?;
        Ok((session, channel))
    }
}

/// `host:port`, an IPv6 address in brackets.
fn net_name(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Tunnel {
    /// Opens a tunnel to `target_host:target_port` through `opts.jump`. Fails with E018 when
    /// no jump host is set or the bastion does not forward to the target, and with the
    /// executor's codes when the bastion cannot be reached or trusted (E011 unreachable,
    /// E012 handshake, E013 authentication, E014 a host key that differs from known_hosts,
    /// E015 one missing from it). Blocking: call it off the async runtime's worker threads
    /// (`spawn_blocking`) or before starting one.
    pub fn open(
        opts: &SshOptions,
        target_host: &str,
        target_port: u16,
    ) -> Result<Tunnel, ExecError> {
        let target = net_name(target_host, target_port);
        let Some(jump) = &opts.jump else {
            return Err(ExecError::Jump {
                jump: "(none)".into(),
                host: target,
                reason: "a tunnel needs a jump host: set `[ssh] jump_host = \"user@host:port\"`"
                    .into(),
            });
        };
        let route = Route {
            bastion: Endpoint {
                addr: jump.host.clone(),
                port: jump.port,
                user: jump.user.clone(),
            },
            jump: jump.to_string(),
            host: target_host.to_string(),
            port: target_port,
            opts: opts.clone(),
        };
        // The bastion is checked once, here: its key, our credentials, its forwarding.
        let (session, channel) = route.channel()?;
        close(session, channel);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| route.jump_err(format!("cannot listen on 127.0.0.1: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| route.jump_err(format!("cannot read the local address: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), accepted.clone());
        let acceptor = std::thread::Builder::new()
            .name("kbz-ssh-tunnel".into())
            .spawn(move || accept_loop(listener, route, &flag, &count))
            .map_err(|e| ExecError::Jump {
                jump: jump.to_string(),
                host: target.clone(),
                reason: format!("cannot start the tunnel thread: {e}"),
            })?;
        tracing::debug!(%local, %target, jump = %jump, "SSH tunnel open");
        Ok(Tunnel {
            local,
            target,
            stop,
            acceptor: Some(acceptor),
            accepted,
        })
    }

    /// The local address (`127.0.0.1:PORT`) that leads to the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The target as `host:port`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How many connections the tunnel has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Closes a channel and disconnects its session (blocking, bounded by one second each).
fn close(session: Session, mut channel: ssh2::Channel) {
    session.set_blocking(true);
    session.set_timeout(1000);
    let _ = channel.close();
    drop(channel);
    let _ = session.disconnect(Some(ssh2::DisconnectCode::ByApplication), "kbz done", None);
}

/// Accepts until `stop`, one thread per connection; joins them all before returning (the
/// listener closes when it returns).
fn accept_loop(listener: TcpListener, route: Route, stop: &Arc<AtomicBool>, count: &AtomicU64) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                count.fetch_add(1, Ordering::Relaxed);
                let (route, stop) = (route.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("kbz-ssh-tunnel-conn".into())
                    .spawn(move || carry(stream, &route, &stop));
                match spawned {
                    Ok(t) => threads.push(t),
                    // The stream was moved into the closure and is dropped: the client sees
                    // its connection closed.
                    Err(e) => tracing::warn!(%peer, error = %e, "cannot start a tunnel thread"),
                }
                threads.retain(|t| !t.is_finished());
            }
            Err(e) if would_block(&e) => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                tracing::warn!(error = %e, "tunnel accept failed");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
    drop(listener);
    for t in threads {
        let _ = t.join();
    }
}

/// One accepted connection: a bastion session and channel of its own, pumped until either
/// side ends or the tunnel stops. When the bastion cannot forward it, the client's connection
/// is closed (it sees a reset or an end of file, as from a target that refused).
fn carry(stream: TcpStream, route: &Route, stop: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    let (session, channel) = match route.channel() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "tunnel connection not forwarded");
            return;
        }
    };
    if stop.load(Ordering::Relaxed) || stream.set_nonblocking(true).is_err() {
        close(session, channel);
        return;
    }
    session.set_blocking(false);
    pump(session, channel, stream, stop, EndOfLocal::HalfClose);
}
