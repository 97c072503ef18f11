//! The lab's apt proxy (apt-cacher-ng on the bridge address), shared by every host.

use super::*;

/// Starts apt-cacher-ng on the bridge address unless one already answers there.
pub(super) fn ensure_apt_proxy(p: &Paths, state: &mut State) -> Result<()> {
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
pub(super) fn probe_apt_proxy(addr: SocketAddr) -> Result<()> {
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

/// What the lab's apt-cacher-ng moved since it started, from its transfer log
/// (`TIME|I|BYTES|CLIENT|PATH`: fetched from the mirror; `|O|`: served to a host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyBytes {
    /// Bytes fetched from the mirror.
    pub upstream: u64,
    /// Bytes served to the hosts.
    pub served: u64,
}

impl ProxyBytes {
    /// What moved between `before` and `self`.
    pub fn since(self, before: ProxyBytes) -> ProxyBytes {
        ProxyBytes {
            upstream: self.upstream.saturating_sub(before.upstream),
            served: self.served.saturating_sub(before.served),
        }
    }
}

/// Sums a transfer log's `I` and `O` lines.
pub fn parse_transfer_log(log: &str) -> ProxyBytes {
    let mut b = ProxyBytes::default();
    for line in log.lines() {
        let mut f = line.split('|');
        let (_, kind, bytes) = (f.next(), f.next(), f.next());
        let Some(n) = bytes.and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        match kind {
            Some("I") => b.upstream += n,
            Some("O") => b.served += n,
            _ => {}
        }
    }
    b
}

/// The lab's apt-cacher-ng transfer counts so far; `None` when the proxy is not the lab's
/// own (no transfer log of ours).
pub fn proxy_bytes() -> Result<Option<ProxyBytes>> {
    let log = lab_dir().join("apt-cacher-ng").join("apt-cacher.log");
    if !log.exists() {
        return Ok(None);
    }
    Ok(Some(parse_transfer_log(&fs_err::read_to_string(&log)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_log_lines_are_summed_by_direction() {
        let log = "1733580000|I|1000|10.77.0.11|debrep/pool/main/e/etcd/etcd-server.deb\n\
                   1733580000|O|1200|10.77.0.11|debrep/pool/main/e/etcd/etcd-server.deb\n\
                   1733580001|O|1200|10.77.0.12|debrep/pool/main/e/etcd/etcd-server.deb\n\
                   not a transfer line\n\
                   1733580002|E|0|10.77.0.13|debrep/missing\n";
        let b = parse_transfer_log(log);
        assert_eq!(
            b,
            ProxyBytes {
                upstream: 1000,
                served: 2400
            }
        );
        assert_eq!(
            b.since(ProxyBytes {
                upstream: 400,
                served: 2400
            }),
            ProxyBytes {
                upstream: 600,
                served: 0
            }
        );
    }
}
