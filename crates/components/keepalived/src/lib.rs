//! kbz-keepalived (module 2): one VRRP instance per VIP of kbz.toml `[vips]` on the hosts
//! with the `lb` role, with unicast peers, PASS authentication and a track script, so each
//! VIP sits on exactly one load balancer whose HAProxy is healthy.
//!
//! Failover design (see also the header of the rendered keepalived.conf):
//! - Every instance is `state BACKUP` + `nopreempt`, `advert_int 1`. When the holder dies,
//!   a peer takes over after `3 * advert_int + skew` (about 3.5 s). A recovered host does not
//!   take the VIP back, so a failure moves each VIP once, not twice.
//! - `chk_haproxy` (interval 1, fall 2, rise 2) has weight 0: a failing check puts the
//!   instance in FAULT, and keepalived sends a priority-0 advert when it leaves MASTER, so a
//!   peer takes over after only the skew time (about 2.5 s from HAProxy's death). A negative
//!   weight would not work with `nopreempt`: a backup with `nopreempt` ignores lower-priority
//!   adverts, so the VIP would stay on the host whose HAProxy is down.
//! - `chk_peers` (3 or more lb hosts; interval 1, fall 2, weight 0): a host that reaches
//!   fewer than a majority of the lb hosts by ping (itself included) goes to FAULT. Without
//!   it, a host cut off from its peers stops hearing adverts, becomes MASTER next to the
//!   real holder and its gratuitous ARP pulls clients to a host that cannot reach the
//!   cluster (seen on the lab: writes stalled until the partition healed). The lb hosts must
//!   answer ICMP echo from each other; `iputils-ping` is installed for the check.
//! - Priorities follow inventory order among lb hosts (150, 140, ...); with `nopreempt` they
//!   only order the election when nobody holds a VIP (first start, all peers restarted).
//! - `virtual_router_id` is `51 + position of the VIP name` in
//!   [`kbz_core::config::VIP_NAMES`] (postgres 51, redis 52, rabbitmq 53, mariadb 54,
//!   k8s_api 55), stable when VIPs are added or removed. Another VRRP router on the same LAN
//!   with one of these ids collides (E037); move kbz's range with the `vrid_base` label on the
//!   lb hosts (same value on each, e.g. `vrid_base=120`).

mod health;
mod probe;
mod vrrp;

pub use probe::{observe_script, parse_observation, LbView, VipHolders};
pub use vrrp::{instances, priority, render_config, VipInstance};

use async_trait::async_trait;
use kbz_core::component::{
    ClusterChange, Component, ComponentError, HealthCheck, HealthRaw, HostExec, Probe,
};
use kbz_core::{Context, Host, Resource, Role};
use kbz_errors::Code;
use std::time::{Duration, Instant};

/// The keepalived configuration file.
pub const CONFIG_PATH: &str = "/etc/keepalived/keepalived.conf";
/// The track script run by `chk_haproxy`.
pub const CHECK_SCRIPT_PATH: &str = "/etc/keepalived/kbz_check_haproxy.sh";
/// The track script run by `chk_peers` (3 or more lb hosts).
pub const PEERS_SCRIPT_PATH: &str = "/etc/keepalived/kbz_check_peers.sh";
/// The package that gives `chk_peers` its `ping`.
pub const PING_PACKAGE: &str = "iputils-ping";
/// The secret whose first 8 characters are the VRRP `auth_pass`.
pub const AUTH_SECRET: &str = "keepalived_auth_pass";
/// The first `virtual_router_id` (the `postgres` VIP) unless the `vrid_base` label says
/// otherwise.
pub const VRID_BASE_DEFAULT: u8 = 51;
/// The lb-host label that moves kbz's `virtual_router_id` range.
pub const VRID_LABEL: &str = "vrid_base";
/// Package and service name.
pub const SERVICE: &str = "keepalived";

const CHECK_SCRIPT: &str = include_str!("../templates/check_haproxy.sh");
const PEERS_SCRIPT: &str = include_str!("../templates/check_peers.sh");

/// Module 2: keepalived VIPs on the `lb` hosts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Keepalived;

impl Keepalived {
    /// The track script's content.
    pub fn check_script() -> &'static str {
        CHECK_SCRIPT
    }

    /// The `chk_peers` track script's content.
    pub fn peers_script() -> &'static str {
        PEERS_SCRIPT
    }
}

#[async_trait]
impl Component for Keepalived {
    fn name(&self) -> &'static str {
        "keepalived"
    }

    fn module(&self) -> u8 {
        2
    }

    fn secret_names(&self) -> Vec<String> {
        vec![AUTH_SECRET.to_string()]
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Lb)
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let conf = render_config(ctx, host)?;
        Ok(vec![
            Resource::package(PING_PACKAGE),
            Resource::package(SERVICE),
            Resource::Directory {
                path: "/etc/keepalived".into(),
                mode: 0o755,
                owner: "root:root".into(),
            },
            // Root-owned and not writable by others: `enable_script_security` refuses it else.
            Resource::file(CHECK_SCRIPT_PATH, CHECK_SCRIPT, 0o755),
            Resource::file(PEERS_SCRIPT_PATH, PEERS_SCRIPT, 0o755),
            Resource::file(CONFIG_PATH, conf, 0o640),
            // keepalived checks the scripts' security when it loads its config, so a new
            // script is a reason to restart too.
            Resource::service(
                SERVICE,
                &[CONFIG_PATH, CHECK_SCRIPT_PATH, PEERS_SCRIPT_PATH],
            ),
        ])
    }

    /// One host at a time: a restarting holder hands its VIPs to a running peer (priority-0
    /// advert) instead of every peer restarting at once and nobody holding them.
    fn rolling(&self) -> bool {
        true
    }

    async fn host_ready(
        &self,
        ctx: &Context,
        host: &HostExec,
        changed: bool,
    ) -> Result<(), ComponentError> {
        if !changed {
            return Ok(());
        }
        kbz_core::wait::until_ok(
            host.exec.as_ref(),
            "systemctl is-active --quiet keepalived",
            "keepalived to run",
            Duration::from_secs(ctx.config.timeouts.readiness),
            Duration::from_secs(1),
        )
        .await
        .map(|_| ())
    }

    /// Removes keepalived, its config and scripts; `iputils-ping` stays (a common tool the
    /// host may have had before kbz).
    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        Ok(vec![
            Resource::stopped_service(SERVICE),
            Resource::absent_package(SERVICE),
            Resource::absent_file(CONFIG_PATH),
            Resource::absent_file(CHECK_SCRIPT_PATH),
            Resource::absent_file(PEERS_SCRIPT_PATH),
        ])
    }

    /// Waits until keepalived runs on every lb host and every VIP has exactly one holder.
    /// Read-only: it only looks at `systemctl is-active` and `ip -o addr show`.
    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        let vips = instances(ctx)?;
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let timeout = Duration::from_secs(ctx.config.timeouts.readiness);
        let interval = Duration::from_secs(1);
        let start = Instant::now();
        loop {
            let views = probe::observe_all(hosts).await;
            let mut views_ok = Vec::new();
            for (name, v) in views {
                views_ok.push((name, v?));
            }
            let inactive: Vec<&str> = views_ok
                .iter()
                .filter(|(_, v)| !v.keepalived_active)
                .map(|(n, _)| n.as_str())
                .collect();
            let holders = probe::holders(&vips, &views_ok);
            let bad: Vec<&VipHolders> = holders.iter().filter(|h| !h.ok()).collect();
            if inactive.is_empty() && bad.is_empty() {
                return Ok(Vec::new());
            }
            if start.elapsed() + interval > timeout {
                if !bad.is_empty() {
                    let lines: Vec<String> = bad.iter().map(|h| h.describe()).collect();
                    return Err(ComponentError::Cluster {
                        code: Code::E037,
                        message: format!("after {}s: {}", timeout.as_secs(), lines.join("; ")),
                        host: None,
                        hint: Some(
                            "check `journalctl -u keepalived -n 100` on the lb hosts, that VRRP \
                             (IP protocol 112) passes between them, and that no other router on \
                             the LAN uses the same virtual_router_id (move kbz's range with the \
                             `vrid_base` label)"
                                .into(),
                        ),
                    });
                }
                return Err(ComponentError::Readiness {
                    what: format!("keepalived to run on {}", inactive.join(", ")),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn health_probes(&self, _ctx: &Context, _host: &Host) -> Vec<Probe> {
        health::probes()
    }

    /// Per lb host: keepalived active. Per VIP: exactly one holder (E037 otherwise).
    fn health_checks(&self, ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        health::checks(ctx, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Secrets;

    fn example() -> Context {
        kbz_testkit::example_context(Keepalived.secret_names())
    }

    fn conf(ctx: &Context, host: &str) -> String {
        let h = ctx.inventory.host(host).expect("host").clone();
        let r = Keepalived.desired(ctx, &h).expect("desired");
        r.iter()
            .find_map(|r| match r {
                Resource::File { path, content, .. } if path == CONFIG_PATH => {
                    Some(String::from_utf8(content.clone()).expect("utf8"))
                }
                _ => None,
            })
            .expect("config file")
    }

    #[test]
    fn applies_to_lb_hosts_only() {
        let ctx = example();
        let names: Vec<&str> = ctx
            .inventory
            .hosts
            .iter()
            .filter(|h| Keepalived.applies_to(h))
            .map(|h| h.hostname.as_str())
            .collect();
        assert_eq!(names, ["lb1", "lb2"]);
    }

    #[test]
    fn priorities_follow_inventory_order() {
        let ctx = example();
        let lb1 = ctx.inventory.host("lb1").expect("lb1");
        let lb2 = ctx.inventory.host("lb2").expect("lb2");
        assert_eq!(priority(&ctx, lb1).expect("p"), 150);
        assert_eq!(priority(&ctx, lb2).expect("p"), 140);
        assert!(conf(&ctx, "lb1").contains("    priority 150\n"));
        assert!(conf(&ctx, "lb2").contains("    priority 140\n"));
    }

    #[test]
    fn unicast_peers_are_the_other_lb_hosts() {
        let ctx = example();
        let c = conf(&ctx, "lb1");
        assert!(c.contains("unicast_src_ip 192.0.2.11\n"), "{c}");
        assert!(
            c.contains("unicast_peer {\n        192.0.2.12\n    }"),
            "{c}"
        );
        let c = conf(&ctx, "lb2");
        assert!(c.contains("unicast_src_ip 192.0.2.12\n"), "{c}");
        assert!(
            c.contains("unicast_peer {\n        192.0.2.11\n    }"),
            "{c}"
        );
    }

    #[test]
    fn one_instance_per_configured_vip_with_stable_ids() {
        let mut ctx = example();
        let mut cfg = (*ctx.config).clone();
        cfg.vips.remove("redis");
        cfg.vips.remove("k8s_api");
        ctx.config = std::sync::Arc::new(cfg);
        let v = instances(&ctx).expect("instances");
        let got: Vec<(&str, u8)> = v.iter().map(|i| (i.key.as_str(), i.vrid)).collect();
        // Removing redis does not renumber rabbitmq or mariadb.
        assert_eq!(got, [("postgres", 51), ("rabbitmq", 53), ("mariadb", 54)]);
        let c = conf(&ctx, "lb1");
        assert_eq!(c.matches("vrrp_instance ").count(), 3, "{c}");
        assert!(!c.contains("192.0.2.101"), "{c}");
        assert!(c.contains("192.0.2.100/32 dev eth0"), "{c}");
    }

    #[test]
    fn no_vips_means_no_instances() {
        let mut ctx = example();
        let mut cfg = (*ctx.config).clone();
        cfg.vips.clear();
        ctx.config = std::sync::Arc::new(cfg);
        let c = conf(&ctx, "lb1");
        assert!(!c.contains("vrrp_instance"), "{c}");
    }

    #[test]
    fn interface_label_overrides_the_default() {
        let ctx = example();
        let mut lb1 = ctx.inventory.host("lb1").expect("lb1").clone();
        lb1.labels.insert("iface".into(), "ens18".into());
        let r = Keepalived.desired(&ctx, &lb1).expect("desired");
        let c = r
            .iter()
            .find_map(|r| match r {
                Resource::File { path, content, .. } if path == CONFIG_PATH => {
                    Some(String::from_utf8_lossy(content).into_owned())
                }
                _ => None,
            })
            .expect("conf");
        assert!(c.contains("interface ens18\n"), "{c}");
        assert!(c.contains("192.0.2.100/32 dev ens18\n"), "{c}");
        assert!(!c.contains("eth0"), "{c}");
    }

    #[test]
    fn auth_pass_is_the_first_8_characters_of_the_secret() {
        let ctx = example();
        let c = conf(&ctx, "lb1");
        // The placeholder is `keepalived_auth_pass-PLACEHOLDER`.
        assert!(c.contains("auth_pass keepaliv\n"), "{c}");
        assert_eq!(c.matches("auth_type PASS").count(), 5);
    }

    #[test]
    fn vrid_base_label_moves_the_range_and_must_agree() {
        let mut ctx = example();
        let mut inv = (*ctx.inventory).clone();
        for h in inv.hosts.iter_mut().filter(|h| h.has(Role::Lb)) {
            h.labels.insert(VRID_LABEL.into(), "120".into());
        }
        ctx.inventory = std::sync::Arc::new(inv.clone());
        let v = instances(&ctx).expect("instances");
        assert_eq!(v[0].vrid, 120);
        assert_eq!(v.last().map(|i| i.vrid), Some(124));

        inv.hosts
            .iter_mut()
            .find(|h| h.hostname == "lb2")
            .expect("lb2")
            .labels
            .insert(VRID_LABEL.into(), "130".into());
        ctx.inventory = std::sync::Arc::new(inv.clone());
        let e = instances(&ctx).expect_err("disagreeing labels");
        assert!(e.to_string().contains("vrid_base"), "{e}");

        for h in inv.hosts.iter_mut().filter(|h| h.has(Role::Lb)) {
            h.labels.insert(VRID_LABEL.into(), "253".into());
        }
        ctx.inventory = std::sync::Arc::new(inv);
        let e = instances(&ctx).expect_err("out of range");
        assert!(e.to_string().contains("255"), "{e}");
    }

    #[test]
    fn single_lb_has_no_unicast_block() {
        let mut ctx = example();
        let mut inv = (*ctx.inventory).clone();
        inv.hosts.retain(|h| h.hostname != "lb2");
        ctx.inventory = std::sync::Arc::new(inv);
        let c = conf(&ctx, "lb1");
        assert!(!c.contains("unicast"), "{c}");
        assert!(c.contains("priority 150"), "{c}");
    }

    #[test]
    fn resources_in_apply_order_and_uninstall_removes_everything() {
        let ctx = example();
        let lb1 = ctx.inventory.host("lb1").expect("lb1").clone();
        let ids: Vec<String> = Keepalived
            .desired(&ctx, &lb1)
            .expect("desired")
            .iter()
            .map(Resource::id)
            .collect();
        assert_eq!(
            ids,
            [
                "package:iputils-ping",
                "package:keepalived",
                "dir:/etc/keepalived",
                "file:/etc/keepalived/kbz_check_haproxy.sh",
                "file:/etc/keepalived/kbz_check_peers.sh",
                "file:/etc/keepalived/keepalived.conf",
                "service:keepalived"
            ]
        );
        let r = Keepalived.desired(&ctx, &lb1).expect("desired");
        assert!(matches!(&r[5], Resource::File { mode: 0o640, owner, .. } if owner == "root:root"));
        assert!(
            matches!(&r[6], Resource::Service { restart_on, .. } if restart_on.contains(&CONFIG_PATH.to_string()) && restart_on.contains(&PEERS_SCRIPT_PATH.to_string()))
        );
        let u = Keepalived.uninstall(&ctx, &lb1).expect("uninstall");
        assert!(u.contains(&Resource::Service {
            name: "keepalived".into(),
            enabled: false,
            running: false,
            restart_on: vec![]
        }));
        assert!(u.contains(&Resource::absent_package("keepalived")));
        assert!(u.contains(&Resource::absent_file(CONFIG_PATH)));
        assert!(u.contains(&Resource::absent_file(PEERS_SCRIPT_PATH)));
        // ping is a common tool the host may have had before: uninstall leaves it.
        assert!(!u.iter().any(|r| r.id() == "package:iputils-ping"));
    }

    #[test]
    fn missing_secret_is_reported() {
        let mut ctx = example();
        ctx.secrets = std::sync::Arc::new(Secrets::in_memory());
        let lb1 = ctx.inventory.host("lb1").expect("lb1").clone();
        let e = Keepalived.desired(&ctx, &lb1).expect_err("no secret");
        assert!(matches!(e, ComponentError::MissingSecret(_)), "{e}");
    }
}
