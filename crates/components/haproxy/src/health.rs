//! HAProxy health, judged from the lb hosts' batched answers: each host's stats page
//! answers, and each front's backend has the servers it needs up (one primary or master, at
//! least one replica). A front no lb host serves right is down; one lb host's bad view is
//! degraded.

use kbz_core::health::{HealthCheck, HealthRaw, HealthStatus, Probe, CLUSTER};
use kbz_core::net::host_port;
use kbz_core::{shell, Context, Host};
use kbz_errors::Code;
use std::collections::BTreeMap;

use crate::{fronts, parse_stats_csv, stats_url, verdict, CONFIG_PATH};

/// The probe: the stats CSV, with the stats credentials read from haproxy.cfg on the host
/// (root-only), handed to curl on stdin: no secret travels or shows in `ps`.
pub fn probes(host: &Host) -> Vec<Probe> {
    vec![Probe::new(
        "stats",
        format!(
            "a=$(awk '$1==\"stats\" && $2==\"auth\" {{print $3; exit}}' {cfg})\nprintf 'user = \"%s\"\\n' \"$a\" | curl -gfsS --max-time 5 -K - {url}",
            cfg = shell::quote(CONFIG_PATH),
            url = shell::quote(&stats_url(host)),
        ),
    )]
}

const FIX_STATS: &str =
    "`systemctl status haproxy` on the host; `kbz-install --only haproxy` restores its config";

/// Per lb host: stats answered, and a verdict per front; per front: served right by at least
/// one lb host.
pub fn checks(ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let fronts = fronts(ctx);
    let mut out = Vec::new();
    let mut good: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for h in raw.hosts() {
        let name = h.hostname.as_str();
        let Ok(o) = raw.get(name, "stats") else {
            continue;
        };
        let rows = if o.success() {
            parse_stats_csv(&o.text)
        } else {
            Err(format!("curl exited {}: {}", o.status, o.text.trim()))
        };
        let rows = match rows {
            Ok(r) => r,
            Err(reason) => {
                out.push(HealthCheck::failing(
                    HealthStatus::Degraded,
                    "haproxy",
                    name,
                    "stats",
                    format!("the stats page did not answer: {reason}"),
                    Code::E040,
                    FIX_STATS,
                ));
                continue;
            }
        };
        out.push(HealthCheck::ok(
            "haproxy",
            name,
            "stats",
            format!("{} servers reported", rows.len()),
        ));
        for f in &fronts {
            let (ok, detail) = verdict(f, &rows);
            let detail = detail.trim_start_matches("E040: ").to_string();
            if ok {
                good.entry(f.backend).or_default().push(name.to_string());
            }
            out.push(HealthCheck::verdict(
                ok,
                HealthStatus::Degraded,
                "haproxy",
                name,
                &format!("backend {} ({})", f.backend, host_port(f.vip, f.port)),
                detail,
                Code::E040,
                "HAProxy's checks say which servers answer: see `kbz-health --component postgres` / `--component redis` for the members themselves",
            ));
        }
    }
    for f in &fronts {
        let by = good.get(f.backend).cloned().unwrap_or_default();
        out.push(HealthCheck::verdict(
            !by.is_empty(),
            HealthStatus::Down,
            "haproxy",
            CLUSTER,
            &format!("front {}", host_port(f.vip, f.port)),
            if by.is_empty() {
                format!("no lb host serves backend {} as expected", f.backend)
            } else {
                format!("backend {} served as expected by {}", f.backend, by.join(", "))
            },
            Code::E040,
            "no lb host has the servers this front needs: fix the members first (the rows above), then HAProxy's checks follow within seconds",
        ));
    }
    out
}
