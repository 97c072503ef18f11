//! `lab up`: preflight, the SSH key, host roots, booting the containers and the sysctls they need.

use super::*;

/// Boots a lab of `count` hosts (1..=8) and writes its files. Refuses if a lab is already up.
/// On failure it removes whatever it created before returning the error.
pub fn up(count: u8) -> Result<LabInfo> {
    anyhow::ensure!(
        (1..=MAX_HOSTS).contains(&count),
        "a lab has 1 to {MAX_HOSTS} hosts, not {count}"
    );
    require_root()?;
    let p = paths();
    fs_err::create_dir_all(&p.dir)?;
    let _lock = change_lock(&p)?;
    if p.state.exists() {
        bail!(
            "a lab is already up ({}); run `cargo xtask lab down` first",
            p.state.display()
        );
    }
    let started = Instant::now();
    base::ensure_prerequisites()?;
    preflight(count)?;
    let t_prereq = started.elapsed();
    fs_err::create_dir_all(&p.logs)?;
    let t = Instant::now();
    let base = base::ensure_base(&p.logs.join("debootstrap.log"))?;
    let t_base = t.elapsed();
    ensure_key(&p)?;

    let mut state = State::new();
    for i in 1..=count {
        let name = host_name(i);
        state.hosts.push(HostState {
            ip: host_ip(i),
            index: i,
            roles: files::roles_for(i),
            netns: None,
            veth: None,
            dir: None,
            upper: p.hosts.join(&name).join("upper"),
            log: p.logs.join(format!("{name}.log")),
            pidfile: p.pids.join(format!("{name}.pid")),
            nspawn: None,
            leader: None,
            power: Power::On,
            partitioned: false,
            name,
        });
    }
    state.save(&p.state)?;
    match bring_up(&p, &base, &mut state) {
        Ok((t_prepare, t_boot)) => {
            println!(
                "lab up: {count} host{} in {} (prerequisites {}, base {}{}, prepare {}, boot to SSH {})",
                if count == 1 { "" } else { "s" },
                secs(started.elapsed()),
                secs(t_prereq),
                secs(t_base),
                if t_base < Duration::from_secs(1) { " cached" } else { "" },
                secs(t_prepare),
                secs(t_boot),
            );
            Ok(lab_info(&p, &state))
        }
        Err(err) => {
            eprintln!("lab: up failed, removing what it created: {err:#}");
            if let Err(e) = teardown(&p, &mut state) {
                eprintln!("lab: teardown after the failed up also failed: {e:#}");
            }
            Err(err)
        }
    }
}

/// The controller's current values of the kernel-global sysctls module 1 sets.
pub(super) fn global_sysctls() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, _) in kbz_base::SYSCTLS
        .iter()
        .filter(|(k, _)| !k.starts_with("net."))
    {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        if let Ok(v) = fs_err::read_to_string(&path) {
            out.push((key.to_string(), v.trim().to_string()));
        }
    }
    Ok(out)
}

/// Writes back the kernel-global sysctls recorded by `up`.
pub(super) fn restore_sysctls(state: &State) -> Result<()> {
    for (key, value) in &state.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs_err::write(&path, format!("{value}\n")).with_context(|| format!("restore {key}"))?;
    }
    Ok(())
}

/// Refuses to start if any name or the subnet the lab would use is taken already.
pub(super) fn preflight(count: u8) -> Result<()> {
    let hint = "it is a leftover of an earlier lab or belongs to someone else; remove it";
    if net::link_exists(BRIDGE) {
        bail!("network link {BRIDGE} already exists but no lab is recorded: {hint} (`ip link del {BRIDGE}`)");
    }
    if net::route_exists(SUBNET)? {
        bail!("the controller already routes {SUBNET}; the lab needs that subnet for itself");
    }
    let namespaces = net::netns_list()?;
    for i in 1..=count {
        let (ns, veth) = (host_name(i), veth_name(i));
        if namespaces.contains(&ns) {
            bail!("network namespace {ns} already exists but no lab is recorded: {hint} (`ip netns del {ns}`)");
        }
        if net::link_exists(&veth) {
            bail!("network link {veth} already exists but no lab is recorded: {hint} (`ip link del {veth}`)");
        }
    }
    Ok(())
}

/// Generates the lab's root SSH key once (kept across labs).
pub(super) fn ensure_key(p: &Paths) -> Result<()> {
    if p.key.exists() && p.key.with_extension("pub").exists() {
        return Ok(());
    }
    for f in [p.key.clone(), p.key.with_extension("pub")] {
        if f.exists() {
            fs_err::remove_file(f)?;
        }
    }
    run_cmd(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kbz-lab"])
            .arg("-f")
            .arg(&p.key),
    )?;
    Ok(())
}

/// Creates the bridge, the apt proxy, each host's disk, network and container, and waits for
/// SSH. Returns the prepare and boot durations.
pub(super) fn bring_up(p: &Paths, base: &Path, state: &mut State) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    state.sysctls = global_sysctls()?;
    state.bridge = Some(BRIDGE.into());
    state.save(&p.state)?;
    net::create_bridge(BRIDGE, BRIDGE_IP, PREFIX)?;
    ensure_apt_proxy(p, state)?;

    // Disks: each host's overlay upper dir, pre-seeded with its identity, in parallel.
    for h in state.hosts.iter_mut() {
        h.dir = Some(p.hosts.join(&h.name));
    }
    state.save(&p.state)?;
    let file_hosts: Vec<FileHost> = state
        .hosts
        .iter()
        .map(|h| FileHost {
            name: h.name.clone(),
            ip: h.ip,
            roles: h.roles.clone(),
        })
        .collect();
    let authorized = fs_err::read_to_string(p.key.with_extension("pub"))?;
    let host_keys: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
        let jobs: Vec<_> = state
            .hosts
            .iter()
            .map(|h| s.spawn(|| prepare_upper(h, &file_hosts, &authorized)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panic"))))
            .collect()
    });
    let mut known_hosts = String::new();
    for (h, keys) in state.hosts.iter().zip(host_keys) {
        let keys = keys.with_context(|| format!("cannot prepare {}", h.name))?;
        known_hosts.push_str(&files::known_hosts_lines(h.ip, &keys));
    }
    state.files = vec![p.known_hosts.clone(), p.servers.clone(), p.config.clone()];
    state.save(&p.state)?;
    fs_err::write(&p.known_hosts, known_hosts)?;

    // Network: one namespace and veth pair per host.
    // `ip netns add` makes /run/netns a mount point of its own if it is not one yet.
    let run_netns = PathBuf::from(RUN_NETNS);
    if !net::mount_points()?.contains(&run_netns) {
        state.mounts.push(run_netns);
    }
    for i in 0..state.hosts.len() {
        let (name, index, ip) = {
            let h = &state.hosts[i];
            (h.name.clone(), h.index, h.ip)
        };
        state.hosts[i].netns = Some(name.clone());
        state.mounts.push(Path::new(RUN_NETNS).join(&name));
        state.save(&p.state)?;
        net::create_netns(&name)?;
        let veth = veth_name(index);
        state.hosts[i].veth = Some(veth.clone());
        state.save(&p.state)?;
        net::create_host_link(&name, &veth, INNER_IF, BRIDGE, ip, PREFIX, BRIDGE_IP)?;
    }
    let t_prepare = t.elapsed();

    // Boot all, then wait for all.
    let t = Instant::now();
    for i in 0..state.hosts.len() {
        boot(p, base, state, i)?;
    }
    wait_all_ssh(p, state, &(0..state.hosts.len()).collect::<Vec<_>>())?;
    let t_boot = t.elapsed();

    fs_err::write(&p.servers, files::servers_tsv(&file_hosts))?;
    fs_err::write(&p.config, files::kbz_toml(&p.key, &p.known_hosts))?;
    Ok((t_prepare, t_boot))
}

/// Fills a host's overlay upper dir: its own SSH host keys (so they are known before boot),
/// hostname, /etc/hosts, machine id and root's authorized_keys. Returns the public host keys.
pub(super) fn prepare_upper(
    h: &HostState,
    all: &[FileHost],
    authorized: &str,
) -> Result<Vec<String>> {
    let dir = h.dir.as_ref().context("host dir not recorded")?;
    base::remove_tree(dir)?;
    let upper = &h.upper;
    let mode = |path: &Path, mode: u32| {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    for (sub, m) in [
        ("", 0o755),
        ("etc", 0o755),
        ("etc/ssh", 0o755),
        ("root", 0o700),
        ("root/.ssh", 0o700),
    ] {
        let d = upper.join(sub);
        fs_err::create_dir_all(&d)?;
        mode(&d, m)?;
    }
    // Ed25519 and ECDSA host keys of its own (RSA is left out: generating it costs seconds
    // per host, and every client kbz uses speaks both), named by a drop-in so sshd does not
    // look for the missing RSA key.
    let etc = upper.join("etc");
    for kind in HOST_KEY_TYPES {
        let key = etc.join(format!("ssh/ssh_host_{kind}_key"));
        run_cmd(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    &format!("root@{}", h.name),
                    "-f",
                ])
                .arg(&key),
        )?;
    }
    let dropin = etc.join("ssh/sshd_config.d");
    fs_err::create_dir_all(&dropin)?;
    mode(&dropin, 0o755)?;
    let hostkeys: String = HOST_KEY_TYPES
        .iter()
        .map(|k| format!("HostKey /etc/ssh/ssh_host_{k}_key\n"))
        .collect();
    fs_err::write(
        dropin.join("00-kbz-lab-hostkeys.conf"),
        format!("# Written by `cargo xtask lab`: this host's own keys.\n{hostkeys}"),
    )?;
    // dpkg without its fsyncs (as Debian's container images set it): the lab's hosts are
    // thrown away, never power-cut during an apt run, and the packages phase of every
    // install in the e2e is mostly dpkg syncing files on the CI machine's one disk.
    let dpkg = etc.join("dpkg/dpkg.cfg.d");
    fs_err::create_dir_all(&dpkg)?;
    mode(&etc.join("dpkg"), 0o755)?;
    mode(&dpkg, 0o755)?;
    fs_err::write(
        dpkg.join("kbz-lab-unsafe-io"),
        "# Written by `cargo xtask lab`: a throwaway host.\nforce-unsafe-io\n",
    )?;
    fs_err::write(etc.join("hostname"), format!("{}\n", h.name))?;
    fs_err::write(etc.join("hosts"), files::etc_hosts(all))?;
    mode(&etc.join("hosts"), 0o644)?;
    fs_err::write(etc.join("machine-id"), format!("{}\n", random_hex(16)?))?;
    mode(&etc.join("machine-id"), 0o444)?;
    let keys = upper.join("root/.ssh/authorized_keys");
    fs_err::write(&keys, authorized)?;
    mode(&keys, 0o600)?;

    let mut pubs: Vec<PathBuf> = fs_err::read_dir(etc.join("ssh"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("ssh_host_") && n.ends_with(".pub")
        })
        .collect();
    pubs.sort();
    anyhow::ensure!(!pubs.is_empty(), "ssh-keygen wrote no host keys");
    pubs.iter()
        .map(|p| Ok(fs_err::read_to_string(p)?.trim().to_string()))
        .collect()
}

pub(super) fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts host `i`'s container in the background and records its process.
pub(super) fn boot(p: &Paths, base: &Path, state: &mut State, i: usize) -> Result<()> {
    let h = &state.hosts[i];
    let netns = h.netns.as_ref().context("netns not recorded")?;
    if let Some(parent) = h.log.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::write(&h.log, "")?;
    let mut overlay = OsString::from("--overlay=");
    overlay.push(base);
    overlay.push(":");
    overlay.push(&h.upper);
    overlay.push(":/");
    let argv: Vec<OsString> = vec![
        "systemd-nspawn".into(),
        "-D".into(),
        base.into(),
        overlay,
        "--boot".into(),
        "--register=no".into(),
        "--keep-unit".into(),
        "--console=read-only".into(),
        // A real host manages its own network: addresses (keepalived's VIPs), routes, and the
        // per-namespace net.* sysctls (writable below). Its namespace is its own, so none of
        // this reaches the controller.
        "--capability=CAP_NET_ADMIN".into(),
        "-M".into(),
        h.name.clone().into(),
        format!("--network-namespace-path=/run/netns/{netns}").into(),
    ];
    // Writable /proc/sys: module 1 sets kernel-global sysctls (vm.*, fs.*) as on a real host.
    // They are the controller's; `up` recorded them and `down` restores them.
    let env = [("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "yes")];
    let id = procs::spawn_detached(&argv, &env, &h.log, &h.pidfile)?;
    let h = &mut state.hosts[i];
    h.nspawn = Some(id);
    h.leader = None;
    h.power = Power::On;
    state.save(&p.state)
}
