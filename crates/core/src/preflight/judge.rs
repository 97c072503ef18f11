//! Judging the answers on the controller (pure): each host against what its roles need
//! ([`host`]), and the fleet as a whole: clocks that disagree, quorum members whose
//! interfaces have different MTUs ([`fleet`]).

use kbz_errors::Code;
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::script::{Answer, Apt, Rtt};
use super::{Finding, Severity};
use crate::config::preflight::parse_kernel;
use crate::config::PreflightConfig;
use crate::inventory::{Host, Role};
use crate::preflight::run::HostPlan;

const MIB: u64 = 1024;

/// The checks of one host; returns the findings and how many checks passed.
pub fn host(cfg: &PreflightConfig, plan: &HostPlan, a: &Answer) -> (Vec<Finding>, usize) {
    let h = plan.host.hostname.as_str();
    let n = &plan.needs;
    let mut out = Vec::new();
    let mut passed = 0;
    let mut check = |ok: bool, f: Finding| {
        if ok {
            passed += 1;
        } else {
            out.push(f);
        }
    };
    check(
        a.cpus >= n.cpus,
        Finding::new(
            h,
            "cpus",
            Severity::Error,
            Code::E076,
            format!("{} CPU(s) (minimum {} for {})", a.cpus, n.cpus, n.cpus_for),
            format!(
                "give the host more CPUs, or lower `[preflight.roles.{}] cpus` in kbz.toml",
                n.cpus_for
            ),
        ),
    );
    let mem_mb = a.mem_kb / MIB;
    check(
        mem_mb >= n.memory_mb,
        Finding::new(
            h,
            "memory",
            Severity::Error,
            Code::E076,
            format!(
                "RAM: {mem_mb} MiB (minimum {} MiB for {})",
                n.memory_mb, n.memory_for
            ),
            format!(
                "give the host more memory, or lower `[preflight.roles.{}] memory_mb` in kbz.toml",
                n.memory_for
            ),
        ),
    );
    check(
        a.swap_kb == 0,
        Finding::new(
            h,
            "swap",
            Severity::Warning,
            Code::E076,
            format!("swap is on ({} MiB)", a.swap_kb / MIB),
            "nothing to do: module 1 (base) turns swap off and removes it from /etc/fstab",
        ),
    );
    for (dir, need_mb, role) in &n.disk {
        let key = if role == "base" {
            "[preflight] root_disk_mb".to_string()
        } else {
            format!("[preflight.roles.{role}] disk_mb")
        };
        match a.disk.get(dir) {
            Some(kb) => check(
                kb / MIB >= *need_mb,
                Finding::new(
                    h,
                    format!("disk {dir}"),
                    Severity::Error,
                    Code::E026,
                    format!(
                        "{} MiB free on {dir} (minimum {need_mb} MiB for {role})",
                        kb / MIB
                    ),
                    format!("free or add space (`df -h {dir}`), or lower {key} in kbz.toml"),
                ),
            ),
            None => check(
                false,
                Finding::new(
                    h,
                    format!("disk {dir}"),
                    Severity::Error,
                    Code::E081,
                    format!("the answer has no free space for {dir}"),
                    format!("run `df -Pk {dir}` on the host"),
                ),
            ),
        }
    }
    let (id, ver) = (&a.os.0, &a.os.1);
    check(
        os_supported(id, ver),
        Finding::new(
            h,
            "os",
            Severity::Error,
            Code::E032,
            format!("{id} {ver} (kbz supports Debian 11 or newer and Ubuntu 20.04 or newer)"),
            "install a supported release on the host (Debian 12 is tested)",
        ),
    );
    let min = cfg.kernel().unwrap_or((0, 0));
    check(
        parse_kernel(&a.kernel).is_some_and(|k| k >= min),
        Finding::new(
            h,
            "kernel",
            Severity::Error,
            Code::E032,
            format!("kernel {} (minimum {})", a.kernel, cfg.min_kernel),
            "upgrade the kernel and reboot, or lower `[preflight] min_kernel` in kbz.toml",
        ),
    );
    check(
        a.ntp == "yes",
        Finding::new(
            h,
            "time sync",
            Severity::Warning,
            Code::E078,
            match a.ntp.as_str() {
                "no" => "the clock is not synchronised by NTP".to_string(),
                _ => "cannot tell whether the clock is synchronised (timedatectl gave no answer)"
                    .to_string(),
            },
            "module 1 installs chrony with `[cluster] ntp_servers`; check `chronyc tracking` after it",
        ),
    );
    let ip = plan.host.ip;
    check(
        a.addrs.iter().any(|(_, x)| *x == ip),
        Finding::new(
            h,
            "address",
            Severity::Error,
            Code::E079,
            format!(
                "{ip} (servers.tsv) is on no interface; the host has {}",
                a.addrs
                    .iter()
                    .filter(|(_, x)| !x.is_loopback())
                    .map(|(d, x)| format!("{x} ({d})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "correct the `ip` column of servers.tsv, or configure the address on the host",
        ),
    );
    let elsewhere: Vec<String> = a
        .resolve
        .iter()
        .filter(|x| !x.is_loopback() && **x != ip)
        .map(|x| x.to_string())
        .collect();
    check(
        elsewhere.is_empty(),
        Finding::new(
            h,
            "hostname",
            Severity::Warning,
            Code::E079,
            format!(
                "{h} resolves to {} on the host, not {ip}",
                elsewhere.join(", ")
            ),
            "module 1 writes /etc/hosts; fix the DNS record too so clients agree",
        ),
    );
    ports(plan, a, &mut out, &mut passed);
    for c in &plan.conflicts {
        let found = plan
            .input
            .paths
            .iter()
            .position(|p| p.path == c.path && p.line_prefix == c.line_prefix)
            .and_then(|i| a.paths.get(&i));
        match found {
            Some(files) => out.push(Finding::new(
                h,
                "conflicting install",
                c.severity,
                Code::E077,
                format!("{} ({})", c.what, files.join(", ")),
                c.fix.clone(),
            )),
            None => passed += 1,
        }
    }
    match &a.apt {
        Some(Apt::Ok(_)) => passed += 1,
        Some(Apt::Failed(why)) => {
            let through = plan
                .input
                .apt_proxy
                .as_deref()
                .map(|p| format!(" through the proxy {p}"))
                .unwrap_or_default();
            let what = match why.as_str() {
                "no-source" => "the host has no apt source".to_string(),
                "no-apt-helper" => "apt-helper is missing (is this Debian or Ubuntu?)".to_string(),
                uri => format!("cannot download {uri}{through}"),
            };
            out.push(Finding::new(
                h,
                "apt",
                Severity::Error,
                Code::E019,
                what,
                "check the host's sources and the proxy: `sudo apt-get update` on the host",
            ));
        }
        None => out.push(Finding::new(
            h,
            "apt",
            Severity::Error,
            Code::E081,
            "the answer has no apt line",
            "run `kbz-install preflight -v` and see the log",
        )),
    }
    for (peer, r) in &a.rtt {
        let name = peer_name(plan, *peer);
        let bad = match r {
            Rtt::Ms(ms) if *ms <= cfg.max_rtt_ms => None,
            Rtt::Ms(ms) => Some(format!(
                "round trip to {name} {ms:.1} ms (warning above {} ms)",
                cfg.max_rtt_ms
            )),
            Rtt::Lost => Some(format!(
                "no answer to ping from {name} (ICMP blocked or host down)"
            )),
            Rtt::NoPing => Some(format!(
                "cannot measure the round trip to {name}: ping is not installed"
            )),
        };
        match bad {
            None => passed += 1,
            Some(d) => out.push(Finding::new(
                h,
                format!("rtt {name}"),
                Severity::Warning,
                Code::E080,
                d,
                "keep quorum members close (one site or low-latency zones); let them answer ICMP echo",
            )),
        }
    }
    for (peer, (mtu, ok)) in &a.pmtu {
        let name = peer_name(plan, *peer);
        if *ok {
            passed += 1;
        } else {
            out.push(Finding::new(
                h,
                format!("mtu {name}"),
                Severity::Warning,
                Code::E080,
                format!("a {mtu}-byte packet with don't-fragment set does not reach {name}"),
                "set the same MTU along the path (interfaces, tunnels, switches): `ip link show`",
            ));
        }
    }
    (out, passed)
}

/// A peer's inventory name with its address.
fn peer_name(plan: &HostPlan, ip: IpAddr) -> String {
    plan.peer_names
        .get(&ip)
        .map(|n| format!("{n} ({ip})"))
        .unwrap_or_else(|| ip.to_string())
}

/// Debian 11+, Ubuntu 20.04+.
fn os_supported(id: &str, ver: &str) -> bool {
    let major: Option<u32> = ver.split('.').next().and_then(|m| m.parse().ok());
    match (id, major) {
        ("debian", Some(m)) => m >= 11,
        ("ubuntu", Some(m)) => m >= 20,
        _ => false,
    }
}

/// Every port of the host's components free or held by kbz's own service.
fn ports(plan: &HostPlan, a: &Answer, out: &mut Vec<Finding>, passed: &mut usize) {
    let h = plan.host.hostname.as_str();
    let Some(listeners) = &a.listeners else {
        out.push(Finding::new(
            h,
            "ports",
            Severity::Warning,
            Code::E077,
            "cannot check the ports kbz needs: `ss` (iproute2) is not installed",
            "install iproute2 (`sudo apt-get install iproute2`) and run the preflight again",
        ));
        return;
    };
    for l in &plan.listens {
        let addrs: Vec<String> = l
            .addrs
            .iter()
            .map(|a| crate::net::host_port(*a, l.port))
            .collect();
        let mut clean = true;
        for s in listeners.iter().filter(|s| {
            s.port == l.port
                && (l.addrs.iter().any(|a| a.is_unspecified())
                    || s.addr.is_none_or(|x| l.addrs.contains(&x)))
        }) {
            let at = match s.addr {
                Some(x) => crate::net::host_port(x, s.port),
                None => format!("*:{}", s.port),
            };
            let own = !s.processes.is_empty() && s.processes.iter().all(|p| l.owners.contains(p));
            let marked = l.marker.as_ref().is_none_or(|m| {
                plan.input
                    .paths
                    .iter()
                    .position(|p| p.path == *m && p.line_prefix.is_none())
                    .is_some_and(|i| a.paths.contains_key(&i))
            });
            let finding = if s.processes.is_empty() {
                Some(Finding::new(
                    h,
                    format!("port {}", l.port),
                    Severity::Error,
                    Code::E077,
                    format!(
                        "{at} is held by a process `ss` does not name; {} needs {}",
                        l.service,
                        addrs.join(", ")
                    ),
                    format!(
                        "see who holds it as root: `sudo ss -ltnp 'sport = :{}'`",
                        l.port
                    ),
                ))
            } else if !own {
                Some(Finding::new(
                    h,
                    format!("port {}", l.port),
                    Severity::Error,
                    Code::E077,
                    format!(
                        "{at} is held by {}, not by {}'s {}; kbz binds {}",
                        s.processes.join(", "),
                        l.service,
                        l.owners.join("/"),
                        addrs.join(", ")
                    ),
                    format!(
                        "stop it (`sudo ss -ltnp 'sport = :{}'` names its pid; `systemctl disable --now UNIT`) or move the role to another host",
                        l.port
                    ),
                ))
            } else if !marked {
                Some(Finding::new(
                    h,
                    format!("port {}", l.port),
                    Severity::Warning,
                    Code::E077,
                    format!(
                        "{at} is held by {} that kbz did not install (no {}); kbz takes the service over",
                        s.processes.join(", "),
                        l.marker.as_deref().unwrap_or("-")
                    ),
                    "back its data up first if it holds any; module 5 disables Debian's default PostgreSQL cluster, any other must be stopped",
                ))
            } else {
                None
            };
            if let Some(f) = finding {
                clean = false;
                out.push(f);
            }
        }
        if clean {
            *passed += 1;
        }
    }
}

/// Checks across hosts: each host's clock against the fleet's median (offsets measured by
/// [`super::run`]), and the interface MTUs of each quorum role's members.
pub fn fleet(
    cfg: &PreflightConfig,
    hosts: &[(&Host, &Answer, i64)],
    out: &mut Vec<Finding>,
    passed: &mut BTreeMap<String, usize>,
) {
    if hosts.len() >= 2 {
        let mut offsets: Vec<i64> = hosts.iter().map(|(_, _, o)| *o).collect();
        offsets.sort_unstable();
        let median = offsets[offsets.len() / 2];
        let max_ns = cfg.max_clock_offset_ms as i64 * 1_000_000;
        for (h, _, o) in hosts {
            let d = o - median;
            if d.abs() > max_ns {
                out.push(Finding::new(
                    &h.hostname,
                    "clock",
                    Severity::Error,
                    Code::E078,
                    format!(
                        "the clock is {} ms {} the other hosts' (maximum {} ms)",
                        d.abs() / 1_000_000,
                        if d > 0 { "ahead of" } else { "behind" },
                        cfg.max_clock_offset_ms
                    ),
                    "set the time (`sudo chronyc makestep` or `sudo date -s`) and keep it with NTP",
                ));
            } else {
                *passed.entry(h.hostname.clone()).or_default() += 1;
            }
        }
    }
    for role in Role::ALL.iter().filter(|r| r.needs_quorum()) {
        let members: Vec<(&str, u32)> = hosts
            .iter()
            .filter(|(h, _, _)| h.has(*role))
            .map(|(h, a, _)| (h.hostname.as_str(), a.mtu.1))
            .collect();
        if members.len() < 2 {
            continue;
        }
        if members.iter().any(|(_, m)| *m != members[0].1) {
            out.push(Finding::new(
                super::super::health::CLUSTER,
                format!("mtu {role}"),
                Severity::Warning,
                Code::E080,
                format!(
                    "the {role} members' interfaces have different MTUs: {}",
                    members
                        .iter()
                        .map(|(h, m)| format!("{h} {m}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "set one MTU on every member's interface of the cluster network",
            ));
        }
    }
}
