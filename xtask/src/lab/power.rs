//! Power and network faults: status, kill (power cut), start, partition and heal.

use super::*;

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

pub(super) fn set_partitioned(host: &str, partitioned: bool) -> Result<()> {
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
pub(super) fn stop_host(h: &HostState) -> Result<()> {
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
