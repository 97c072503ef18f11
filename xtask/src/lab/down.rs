//! `lab down`: tearing down exactly what the state file recorded, and finding leftovers.

use super::*;

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

pub(super) fn teardown(p: &Paths, state: &mut State) -> Result<()> {
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
pub(super) fn recorded_procs(state: &State) -> Vec<(String, ProcId)> {
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

pub(super) fn dir_is_empty(dir: &Path) -> bool {
    fs_err::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// What of the recorded lab still exists: namespaces, links, mounts, processes.
pub(super) fn leftovers(state: &State) -> Result<Vec<String>> {
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
