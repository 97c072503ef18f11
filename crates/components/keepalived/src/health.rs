//! keepalived health, judged from the lb hosts' batched answers: keepalived active on each,
//! and each VIP held by exactly one host (none or several is down: E037).

use kbz_core::health::{HealthCheck, HealthRaw, HealthStatus, Probe, CLUSTER};
use kbz_core::Context;
use kbz_errors::Code;

use crate::probe::{self, LbView};

/// The probe: keepalived's state and the host's addresses.
pub fn probes() -> Vec<Probe> {
    vec![Probe::new("observe", probe::observe_script())]
}

/// Per lb host: keepalived active (degraded otherwise). Per VIP: exactly one holder (down
/// otherwise).
pub fn checks(ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    let vips = match crate::instances(ctx) {
        Ok(v) => v,
        Err(e) => {
            return vec![HealthCheck::failing(
                HealthStatus::Down,
                "keepalived",
                CLUSTER,
                "config",
                e.to_string(),
                Code::E009,
                "fix the [vips] of kbz.toml (`kbz-install validate`)",
            )]
        }
    };
    let mut views: Vec<(String, LbView)> = Vec::new();
    let mut not_asked = Vec::new();
    for h in raw.hosts() {
        let name = h.hostname.as_str();
        match raw.get(name, "observe") {
            Ok(o) => {
                let v = probe::parse_observation(&o.text);
                out.push(HealthCheck::verdict(
                    v.keepalived_active,
                    HealthStatus::Degraded,
                    "keepalived",
                    name,
                    "keepalived active",
                    if v.keepalived_active {
                        "active".to_string()
                    } else {
                        "keepalived is not active: this host cannot take over a VIP".to_string()
                    },
                    Code::E040,
                    "`systemctl status keepalived` and `journalctl -u keepalived` on the host; `kbz-install --only keepalived` restores its config",
                ));
                views.push((name.to_string(), v));
            }
            Err(_) => not_asked.push(name.to_string()),
        }
    }
    for h in probe::holders(&vips, &views) {
        let mut detail = h.describe();
        if !not_asked.is_empty() {
            detail.push_str(&format!(" (not asked: {})", not_asked.join(", ")));
        }
        let fix = if h.holders.is_empty() {
            "no lb host holds it: is keepalived running and is HAProxy up (the track script puts an instance in FAULT without it)? `journalctl -u keepalived` on the lb hosts"
        } else {
            "several hosts hold it: VRRP adverts between the lb hosts are lost (IP protocol 112 blocked, or a different auth_pass); check the firewall between them"
        };
        out.push(HealthCheck::verdict(
            h.ok(),
            HealthStatus::Down,
            "keepalived",
            &if h.holders.is_empty() {
                CLUSTER.to_string()
            } else {
                h.holders.join(",")
            },
            &format!("VIP {} {}", h.key, h.vip),
            detail,
            Code::E037,
            fix,
        ));
    }
    out
}
