//! Reaching lab hosts: waiting for SSH, the ssh command line, running commands on a host.

use super::*;

/// Waits until every listed host answers SSH, then records each container's init process.
pub(super) fn wait_all_ssh(p: &Paths, state: &mut State, which: &[usize]) -> Result<()> {
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

pub(super) fn wait_ssh(p: &Paths, h: &HostState) -> Result<()> {
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
pub(super) fn ssh_base(p: &Paths, ip: Ipv4Addr) -> Command {
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
