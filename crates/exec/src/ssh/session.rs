//! One SSH session: TCP connect with backoff, handshake, running a command on a channel
//! under a deadline (stdin in, stdout/stderr out), and the sudo and timeout wrappers.

use super::*;

/// Why sudo refused to run the script, judged from the output of a failed command. sudo speaks
/// first (before the script runs), possibly after warnings of its own such as "unable to
/// resolve host", so only the leading lines that mention sudo count.
pub(super) fn sudo_refusal(out: &Output) -> Option<&'static str> {
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
pub(super) fn command_line(script: &str, timeout: Duration, sudo: bool) -> String {
    let secs = timeout.as_secs().saturating_add(REMOTE_TIMEOUT_GRACE);
    let inner = format!("timeout -k 10 {secs} sh -c {}", quote(script));
    if sudo {
        format!("sudo -n {inner}")
    } else {
        inner
    }
}

/// Bounds the next blocking libssh2 call by the time left before `deadline`.
pub(super) fn arm(session: &Session, deadline: Instant) -> Result<(), Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Timeout);
    }
    let ms = left.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
    session.set_timeout(ms);
    Ok(())
}

pub(super) fn ssh_failure(e: ssh2::Error, deadline: Instant) -> Failure {
    if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) || Instant::now() >= deadline {
        Failure::Timeout
    } else {
        Failure::Broken(e.message().to_string())
    }
}

/// libssh2's `LIBSSH2_ERROR_EAGAIN`.
pub(super) const LIBSSH2_ERROR_EAGAIN: i32 = -37;

/// libssh2's `LIBSSH2_ERROR_CHANNEL_FAILURE` (the server refused to open a channel).
const LIBSSH2_ERROR_CHANNEL_FAILURE: i32 = -21;

/// Runs one command on a new channel. Opening the channel and the exec request block (bounded
/// by the deadline); then the session turns non-blocking and one loop writes stdin (then EOF)
/// while draining stdout and stderr as they come, so that neither a large input nor a flood on
/// either output stream can fill an SSH window and stall the command.
pub(super) fn exec(
    session: &Session,
    line: &str,
    stdin: Option<&[u8]>,
    deadline: Instant,
    limits: &Limits,
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
    let mut peer = Liveness::new(session, limits.keepalive);
    let result = pump_channel(&mut ch, stdin.unwrap_or(&[]), deadline, limits, &mut peer)
        .and_then(|out| peer.settle(deadline).map(|()| out));
    session.set_blocking(true);
    result
}

/// How many keepalive intervals a peer may stay silent while a command runs before the
/// session counts as dead (like OpenSSH's `ServerAliveCountMax`); also the TCP keepalive
/// probe count.
pub const KEEPALIVE_COUNT: u32 = 3;

/// The channel type of kbz's liveness probe: no server offers it, so every server answers
/// the open request at once with a refusal (RFC 4254 5.1), which proves the peer is alive
/// without starting anything on the host.
const PING_CHANNEL: &str = "kbz-ping@kbz.invalid";

/// Dead-peer detection while a command runs. SSH keepalives without a reply cannot tell a
/// quiet command from a frozen peer (a stopped sshd, a wedged host whose kernel still
/// acknowledges TCP), so once per keepalive interval kbz sends a request the server must
/// answer (an open of [`PING_CHANNEL`]); anything heard from the peer (command output or
/// that answer) counts. Nothing heard for [`KEEPALIVE_COUNT`] intervals is a dead peer.
pub(super) struct Liveness<'a> {
    session: &'a Session,
    interval: Duration,
    last_heard: Instant,
    /// A probe was sent and its answer has not come yet.
    probing: bool,
    last_probe: Instant,
}

impl<'a> Liveness<'a> {
    pub(super) fn new(session: &'a Session, interval: Duration) -> Self {
        let now = Instant::now();
        Liveness {
            session,
            interval,
            last_heard: now,
            probing: false,
            last_probe: now,
        }
    }

    /// The peer said something.
    pub(super) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Drives the probe: sends one each interval, collects its answer; an error when the
    /// peer has been silent for [`KEEPALIVE_COUNT`] intervals.
    pub(super) fn tick(&mut self) -> Result<(), Failure> {
        if self.probing || self.last_probe.elapsed() >= self.interval {
            if !self.probing {
                self.probing = true;
                self.last_probe = Instant::now();
            }
            match self
                .session
                .channel_open(PING_CHANNEL, 32 * 1024, 32 * 1024, None)
            {
                // libssh2 is still sending the request or waiting for the answer.
                Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN) => {}
                // The expected refusal (or, from an odd server, an accepted channel that is
                // closed when dropped): the peer is alive.
                Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_CHANNEL_FAILURE) => {
                    self.probing = false;
                    self.heard();
                }
                Ok(_) => {
                    self.probing = false;
                    self.heard();
                }
                Err(e) => return Err(Failure::Broken(e.message().to_string())),
            }
        }
        let silent = self.last_heard.elapsed();
        if silent >= self.interval * KEEPALIVE_COUNT {
            return Err(Failure::Broken(format!(
                "the host stopped answering: nothing heard for {}s, {KEEPALIVE_COUNT} \
                 keepalive intervals of {}s (the host, its sshd or the network froze)",
                silent.as_secs(),
                self.interval.as_secs()
            )));
        }
        Ok(())
    }

    /// After the command: a probe still waiting for its answer is finished, since libssh2
    /// would resume it as the next channel open.
    fn settle(&mut self, deadline: Instant) -> Result<(), Failure> {
        let mut idle = Backoff::new();
        while self.probing {
            self.tick()?;
            if Instant::now() >= deadline {
                return Err(Failure::Timeout);
            }
            idle.wait_unless(false);
        }
        Ok(())
    }
}

/// What one command may cost: the cap on each output stream and the keepalive interval.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_output: usize,
    pub(super) keepalive: Duration,
}

pub(super) fn pump_channel(
    ch: &mut ssh2::Channel,
    stdin: &[u8],
    deadline: Instant,
    limits: &Limits,
    peer: &mut Liveness<'_>,
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
        // Output came from the peer (stdin written is not an answer).
        let mut heard = false;
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
                    heard = true;
                    if stdout.len() > limits.max_output {
                        return Err(Failure::TooLarge("stdout"));
                    }
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
                    heard = true;
                    if stderr.len() > limits.max_output {
                        return Err(Failure::TooLarge("stderr"));
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(broken(e)),
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Timeout);
        }
        if heard {
            peer.heard();
        }
        peer.tick()?;
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
        peer.tick()?;
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
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_micros(50);
    const MAX: Duration = Duration::from_millis(5);

    pub(super) fn new() -> Self {
        Backoff { next: Self::MIN }
    }

    pub(super) fn wait_unless(&mut self, progress: bool) {
        if progress {
            self.next = Self::MIN;
        } else {
            std::thread::sleep(self.next);
            self.next = (self.next * 2).min(Self::MAX);
        }
    }
}

/// Opens an authenticated session to the target, through the jump host when one is set.
pub(super) fn open(target: &Endpoint, opts: &SshOptions) -> Result<Conn, ExecError> {
    let Some(jump) = &opts.jump else {
        let tcp = tcp_connect(target, opts.connect_timeout)?;
        let _ = tune_tcp(&tcp, opts.keepalive);
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
    let _ = tune_tcp(&tcp, opts.keepalive);
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

pub(super) fn timeout_ms(t: Duration) -> u32 {
    t.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

/// TCP keepalive and user timeout for a session's connection: with a keepalive interval
/// `k`, an idle connection is probed after `k` ([`KEEPALIVE_COUNT`] probes `k` apart) and
/// data left unacknowledged for `KEEPALIVE_COUNT * k` (the liveness probes a running command
/// sends) breaks the connection, so a dead peer is noticed in seconds, not after TCP's
/// default 15 minutes. A peer whose kernel still acknowledges but whose sshd is frozen is
/// [`Liveness`]'s.
pub(super) fn tune_tcp(s: &TcpStream, k: Duration) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(s);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(k)
            .with_interval(k)
            .with_retries(KEEPALIVE_COUNT),
    )?;
    sock.set_tcp_user_timeout(Some(k * KEEPALIVE_COUNT))
}

pub(super) fn tcp_connect(ep: &Endpoint, timeout: Duration) -> Result<TcpStream, ExecError> {
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
pub(super) fn establish<S: std::os::fd::AsRawFd + 'static>(
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
    session.set_keepalive(false, opts.keepalive.as_secs().clamp(1, 3600) as u32);
    Ok(session)
}
