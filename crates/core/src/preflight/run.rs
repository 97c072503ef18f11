//! Running the preflight: what each host is asked ([`HostPlan`], from the config and the
//! components' data), the one round trip per host (concurrently, [`check`]), the clock
//! offset measured around it, and the offline listing of what would be checked ([`plan`]).

use kbz_errors::Code;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::script::{self, Answer, Input, PathCheck};
use super::{judge, Conflict, Finding, Listen, Report, Severity};
use crate::component::Component;
use crate::config::preflight::HostNeeds;
use crate::context::Context;
use crate::executor::Cmd;
use crate::health_run::Connected;
use crate::inventory::Host;

/// Timeout of the preflight script on one host (the apt download is bounded to 20 s, each
/// ping to about a second).
pub const HOST_TIMEOUT: Duration = Duration::from_secs(90);

/// What one host is checked against.
#[derive(Debug, Clone)]
pub struct HostPlan {
    /// The inventory host.
    pub host: Host,
    /// What its roles need.
    pub needs: HostNeeds,
    /// Every port the selected components bind on it.
    pub listens: Vec<Listen>,
    /// Installs that conflict with the selected components.
    pub conflicts: Vec<Conflict>,
    /// The script's input.
    pub input: Input,
    /// Inventory names of the peers pinged.
    pub peer_names: BTreeMap<IpAddr, String>,
}

impl HostPlan {
    /// The plan of `host` for the components that apply to it.
    pub fn new(ctx: &Context, components: &[Arc<dyn Component>], host: &Host) -> Self {
        let needs = ctx.config.preflight.needs(host);
        let mine: Vec<&Arc<dyn Component>> =
            components.iter().filter(|c| c.applies_to(host)).collect();
        let listens: Vec<Listen> = mine.iter().flat_map(|c| c.listens(ctx, host)).collect();
        let conflicts: Vec<Conflict> = mine.iter().flat_map(|c| c.conflicts(ctx, host)).collect();
        let mut paths: Vec<PathCheck> = Vec::new();
        for p in listens
            .iter()
            .filter_map(|l| l.marker.as_deref().map(PathCheck::present))
            .chain(conflicts.iter().map(|c| PathCheck {
                path: c.path.clone(),
                line_prefix: c.line_prefix.clone(),
            }))
        {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        let mut peer_names = BTreeMap::new();
        let mut peers = Vec::new();
        for other in &ctx.inventory.hosts {
            if other.hostname == host.hostname || other.ip == host.ip {
                continue;
            }
            let shares_quorum = host.roles.iter().any(|r| r.needs_quorum() && other.has(*r));
            if shares_quorum && !peers.contains(&other.ip) {
                peers.push(other.ip);
                peer_names.insert(other.ip, other.hostname.clone());
            }
        }
        let input = Input {
            hostname: host.hostname.clone(),
            ip: Some(host.ip),
            dirs: needs.disk.iter().map(|(d, _, _)| d.clone()).collect(),
            paths,
            peers,
            apt_proxy: ctx.config.cluster.apt_proxy.clone(),
            ports: listens.iter().map(|l| l.port).collect(),
        };
        HostPlan {
            host: host.clone(),
            needs,
            listens,
            conflicts,
            input,
            peer_names,
        }
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The host clock's offset from the controller's in ns: the host's start time against the
/// controller's send time plus half the round trip that was not the script running.
fn offset_ns(sent: i128, received: i128, a: &Answer) -> i64 {
    let (start, end) = (a.clock.0 as i128, a.clock.1 as i128);
    let transit = ((received - sent) - (end - start)).max(0) / 2;
    (start - (sent + transit)).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Runs the preflight on every connected host (one round trip each, concurrently) and
/// judges the answers: every problem of every host in one [`Report`].
pub async fn check(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    hosts: Vec<Connected>,
) -> Report {
    let mut set = tokio::task::JoinSet::new();
    for (i, (host, exec)) in hosts.into_iter().enumerate() {
        let plan = HostPlan::new(ctx, components, &host);
        set.spawn(async move {
            let exec = match exec {
                Ok(e) => e,
                Err(e) => return (i, plan, Err((Code::E011, e.to_string())), 0, 0),
            };
            let cmd = Cmd::new(script::script(&plan.input)).timeout(HOST_TIMEOUT);
            let before = exec.round_trips();
            let sent = now_ns();
            let r = exec.run(&cmd).await;
            let received = now_ns();
            let trips = match exec.round_trips().saturating_sub(before) {
                0 => 1,
                n => n as u32,
            };
            let r = match r {
                Ok(o) => match script::parse(&o.stdout_str()) {
                    Ok(a) => {
                        let off = offset_ns(sent, received, &a);
                        Ok((a, off))
                    }
                    Err(why) => Err((Code::E081, why)),
                },
                Err(e) => Err((Code::E021, e.to_string())),
            };
            (i, plan, r, trips, 0)
        });
    }
    let mut done = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok(x) = j {
            done.push(x);
        }
    }
    done.sort_by_key(|d| d.0);
    let mut report = Report::default();
    let mut answered = Vec::new();
    for (_, plan, r, trips, _) in &done {
        let h = plan.host.hostname.clone();
        report.round_trips.insert(h.clone(), *trips);
        match r {
            Ok((a, off)) => {
                let (f, passed) = judge::host(&ctx.config.preflight, plan, a);
                report.findings.extend(f);
                report.passed.insert(h, passed);
                answered.push((&plan.host, a, *off));
            }
            Err((code, why)) => {
                let (check, fix) = match code {
                    Code::E011 => (
                        "reachable",
                        format!(
                            "is {h} powered on and reachable? `ssh {}` from this machine",
                            plan.host.ip
                        ),
                    ),
                    Code::E081 => (
                        "answer",
                        "run the checks by hand to see the line: `kbz-install preflight -v`, and `kbz-install explain E081`".to_string(),
                    ),
                    _ => ("script", "run `kbz-install preflight -v` and see the log".to_string()),
                };
                report
                    .round_trips
                    .insert(h.clone(), if *code == Code::E011 { 0 } else { *trips });
                report.findings.push(Finding::new(
                    &h,
                    check,
                    Severity::Error,
                    *code,
                    why.clone(),
                    fix,
                ));
            }
        }
    }
    judge::fleet(
        &ctx.config.preflight,
        &answered,
        &mut report.findings,
        &mut report.passed,
    );
    report.sort();
    report
}

/// One check that would run on a host, for the offline listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Planned {
    /// Host.
    pub host: String,
    /// Check.
    pub check: String,
    /// What passes.
    pub expect: String,
}

/// What the preflight would check on every host, without connecting (the bundled example,
/// `--offline`).
pub fn plan(ctx: &Context, components: &[Arc<dyn Component>]) -> Vec<Planned> {
    let cfg = &ctx.config.preflight;
    let mut out = Vec::new();
    for host in &ctx.inventory.hosts {
        let p = HostPlan::new(ctx, components, host);
        let n = &p.needs;
        let mut row = |check: String, expect: String| {
            out.push(Planned {
                host: host.hostname.clone(),
                check,
                expect,
            })
        };
        row("cpus".into(), format!(">= {} ({})", n.cpus, n.cpus_for));
        row(
            "memory".into(),
            format!(">= {} MiB ({})", n.memory_mb, n.memory_for),
        );
        for (d, mb, role) in &n.disk {
            row(format!("disk {d}"), format!(">= {mb} MiB free ({role})"));
        }
        row(
            "os, kernel".into(),
            format!("Debian 11+ or Ubuntu 20.04+, kernel >= {}", cfg.min_kernel),
        );
        row(
            "swap, time sync".into(),
            "swap off (warning), NTP synchronised (warning)".into(),
        );
        row(
            "clock".into(),
            format!("within {} ms of the other hosts", cfg.max_clock_offset_ms),
        );
        row(
            "address, hostname".into(),
            format!(
                "{} on an interface, {} resolves to it",
                host.ip, host.hostname
            ),
        );
        for l in &p.listens {
            let addrs: Vec<String> = l
                .addrs
                .iter()
                .map(|a| crate::net::host_port(*a, l.port))
                .collect();
            row(
                format!("port {}", l.port),
                format!(
                    "{} free or held by {} ({})",
                    addrs.join(", "),
                    l.owners.join("/"),
                    l.service
                ),
            );
        }
        for c in &p.conflicts {
            row(
                "conflicting install".into(),
                format!("no {} ({})", c.what, c.path),
            );
        }
        let through = ctx
            .config
            .cluster
            .apt_proxy
            .as_deref()
            .map(|p| format!(" through {p}"))
            .unwrap_or_default();
        row(
            "apt".into(),
            format!("the first index of the host's sources downloads{through}"),
        );
        if !p.peer_names.is_empty() {
            row(
                "rtt, mtu".into(),
                format!(
                    "to {}: round trip <= {} ms, full-size packets pass (warnings)",
                    p.peer_names
                        .values()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    cfg.max_rtt_ms
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_discounts_the_script_and_half_the_transit() {
        let a = Answer {
            clock: (1_000_000_000 + 50, 1_000_000_000 + 250),
            ..Answer::default()
        };
        // Sent at 1e9, received 400 ns later, the script ran 200 ns: 100 ns each way.
        assert_eq!(offset_ns(1_000_000_000, 1_000_000_400, &a), -50);
    }
}
