//! Read-only probes of the lb hosts: whether keepalived runs and which addresses each host
//! holds (`ip -o addr show`), and from that, which host holds each VIP.

use kbz_core::component::{ComponentError, HostExec};
use kbz_core::Cmd;
use kbz_errors::Code;
use std::net::IpAddr;

use crate::vrrp::VipInstance;

/// What one lb host reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbView {
    /// `systemctl is-active keepalived` said `active`.
    pub keepalived_active: bool,
    /// Every address with the interface holding it.
    pub addresses: Vec<(String, IpAddr)>,
}

/// The hosts holding one VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipHolders {
    /// The `[vips]` key.
    pub key: String,
    /// The address.
    pub vip: IpAddr,
    /// Hostnames holding it, in inventory order.
    pub holders: Vec<String>,
    /// Hostnames that were asked.
    pub asked: Vec<String>,
}

impl VipHolders {
    /// Exactly one holder.
    pub fn ok(&self) -> bool {
        self.holders.len() == 1
    }

    /// One sentence for reports; failures start with the E-code.
    pub fn describe(&self) -> String {
        match self.holders.len() {
            1 => format!("VIP {} {} held by {}", self.key, self.vip, self.holders[0]),
            0 => format!(
                "{}: VIP {} {} is held by no lb host ({} asked)",
                Code::E037,
                self.key,
                self.vip,
                self.asked.join(", ")
            ),
            _ => format!(
                "{}: VIP {} {} is held by {} at once (split brain)",
                Code::E037,
                self.key,
                self.vip,
                self.holders.join(" and ")
            ),
        }
    }
}

/// The script that reports keepalived's state and the host's addresses in one round trip.
pub fn observe_script() -> &'static str {
    "printf 'keepalived=%s\\n' \"$(systemctl is-active keepalived 2>/dev/null)\"; ip -o addr show"
}

/// Parses [`observe_script`] output: a `keepalived=STATE` line, then `ip -o addr show` lines
/// (`2: eth0    inet 192.0.2.11/24 brd ... scope global eth0\ ...`).
pub fn parse_observation(out: &str) -> LbView {
    let mut v = LbView::default();
    for line in out.lines() {
        if let Some(state) = line.strip_prefix("keepalived=") {
            v.keepalived_active = state.trim() == "active";
            continue;
        }
        let mut w = line.split_whitespace();
        let (Some(_index), Some(dev), Some(fam), Some(addr)) =
            (w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        if fam != "inet" && fam != "inet6" {
            continue;
        }
        let ip = addr.split('/').next().unwrap_or("");
        if let Ok(ip) = ip.parse() {
            v.addresses
                .push((dev.trim_end_matches(':').to_string(), ip));
        }
    }
    v
}

/// Asks every host at once; results in the order of `hosts`.
pub(crate) async fn observe_all(
    hosts: &[HostExec],
) -> Vec<(String, Result<LbView, ComponentError>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let h = h.clone();
        set.spawn(async move {
            let r = h
                .exec
                .run(&Cmd::new(observe_script()).timeout(std::time::Duration::from_secs(15)))
                .await
                .map_err(ComponentError::from)
                .and_then(|out| {
                    kbz_core::executor::check(
                        h.exec.name(),
                        &out,
                        "keepalived state and addresses",
                    )?;
                    Ok(parse_observation(&out.stdout_str()))
                });
            (i, h.host.hostname, r)
        });
    }
    let mut out = Vec::new();
    while let Some(j) = set.join_next().await {
        match j {
            Ok(r) => out.push(r),
            Err(e) => out.push((
                usize::MAX,
                "-".into(),
                Err(ComponentError::Bootstrap {
                    component: "keepalived".into(),
                    reason: format!("probe task failed: {e}"),
                }),
            )),
        }
    }
    out.sort_by_key(|r| r.0);
    out.into_iter().map(|(_, n, r)| (n, r)).collect()
}

/// Which of the observed hosts hold each VIP.
pub fn holders(vips: &[VipInstance], views: &[(String, LbView)]) -> Vec<VipHolders> {
    vips.iter()
        .map(|v| VipHolders {
            key: v.key.clone(),
            vip: v.vip,
            holders: views
                .iter()
                .filter(|(_, view)| view.addresses.iter().any(|(_, a)| *a == v.vip))
                .map(|(n, _)| n.clone())
                .collect(),
            asked: views.iter().map(|(n, _)| n.clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a Debian 12 lb host holding the postgres VIP.
    const HOLDER: &str = "keepalived=active
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: eth0    inet 192.0.2.11/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.0.2.100/32 scope global eth0\\       valid_lft forever preferred_lft forever
2: eth0    inet6 fe80::216:3eff:fe00:1/64 scope link \\       valid_lft forever preferred_lft forever
";

    #[test]
    fn parses_state_and_addresses() {
        let v = parse_observation(HOLDER);
        assert!(v.keepalived_active);
        assert!(v
            .addresses
            .contains(&("eth0".into(), "192.0.2.100".parse().expect("ip"))));
        assert_eq!(v.addresses.len(), 5);
        let v = parse_observation("keepalived=inactive\n");
        assert!(!v.keepalived_active);
        assert!(parse_observation("").addresses.is_empty());
    }

    #[test]
    fn counts_holders() {
        let vips = vec![
            VipInstance {
                key: "postgres".into(),
                vip: "192.0.2.100".parse().expect("ip"),
                vrid: 51,
            },
            VipInstance {
                key: "redis".into(),
                vip: "192.0.2.101".parse().expect("ip"),
                vrid: 52,
            },
        ];
        let holder = parse_observation(HOLDER);
        let other = parse_observation(
            "keepalived=active\n2: eth0    inet 192.0.2.12/24 brd 192.0.2.255 scope global eth0\n",
        );
        let h = holders(
            &vips,
            &[("lb1".into(), holder.clone()), ("lb2".into(), other)],
        );
        assert!(h[0].ok());
        assert_eq!(h[0].describe(), "VIP postgres 192.0.2.100 held by lb1");
        assert!(!h[1].ok());
        assert!(h[1]
            .describe()
            .starts_with("E037: VIP redis 192.0.2.101 is held by no lb host"));
        let h = holders(
            &vips,
            &[("lb1".into(), holder.clone()), ("lb2".into(), holder)],
        );
        assert!(!h[0].ok());
        assert!(
            h[0].describe().contains("split brain"),
            "{}",
            h[0].describe()
        );
    }
}
