//! Cross-checks of the inventory against kbz.toml: quorum counts (E007), configuration values
//! (E008) and the address plan (E009): VIPs, the MetalLB pool, node IPs and `[cluster] subnet`.
//! Every problem is reported at once; nothing here panics or prints.

use ipnet::IpNet;
use kbz_errors::{Code, Diagnostic};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::config::{key_line, Config};
use crate::inventory::{Host, Inventory};

/// Loads the inventory and the configuration and cross-checks them, reporting the problems of
/// both files together. With `config` `None` the defaults are used (no kbz.toml was named).
///
/// ```
/// let dir = tempfile::tempdir().expect("tempdir");
/// let inv = dir.path().join("servers.tsv");
/// std::fs::write(&inv, "node1\t192.0.2.11\tmonitoring\n").expect("write");
/// let (inventory, config) = kbz_core::validate::load_and_validate(&inv, None).expect("valid");
/// assert_eq!(inventory.hosts.len(), 1);
/// assert_eq!(config.cluster.forks, kbz_core::Config::default().cluster.forks);
///
/// // A missing file is E001, naming it.
/// let missing = kbz_core::validate::load_and_validate(&dir.path().join("nope.tsv"), None);
/// assert_eq!(missing.expect_err("missing")[0].code, kbz_core::errors::Code::E001);
/// ```
pub fn load_and_validate(
    inventory: &Path,
    config: Option<&Path>,
) -> Result<(Inventory, Config), Vec<Diagnostic>> {
    let inv = Inventory::load(inventory);
    let (cfg, config_path) = match config {
        Some(p) => (Config::load(p), p.display().to_string()),
        None => (Ok(Config::default()), String::from("kbz.toml")),
    };
    match (inv, cfg) {
        (Ok(inv), Ok(cfg)) => {
            let diags = match config {
                Some(_) => validate(&inv, &cfg, &config_path),
                None => validate_with_source(&inv, &cfg, &config_path, None),
            };
            if diags.is_empty() {
                Ok((inv, cfg))
            } else {
                Err(diags)
            }
        }
        (inv, cfg) => {
            let mut diags = inv.err().unwrap_or_default();
            diags.extend(cfg.err().unwrap_or_default());
            Err(diags)
        }
    }
}

/// Cross-checks a parsed inventory and configuration. `config_path` names kbz.toml in
/// messages; the file is read (best effort) only to find line numbers.
pub fn validate(inv: &Inventory, cfg: &Config, config_path: &str) -> Vec<Diagnostic> {
    let text = std::fs::read_to_string(config_path).ok();
    validate_with_source(inv, cfg, config_path, text.as_deref())
}

/// [`validate`] with the configuration's source text given (or `None`: no line numbers).
pub fn validate_with_source(
    inv: &Inventory,
    cfg: &Config,
    config_path: &str,
    config_text: Option<&str>,
) -> Vec<Diagnostic> {
    let mut out = inv.check_quorum();
    out.extend(cfg.check(config_path, config_text));
    out.extend(crate::config::mariadb::check_proxysql_pin(
        inv,
        cfg,
        config_path,
    ));
    out.extend(
        Plan {
            inv,
            cfg,
            path: config_path,
            text: config_text,
        }
        .check(),
    );
    out
}

/// The address plan under check.
struct Plan<'a> {
    inv: &'a Inventory,
    cfg: &'a Config,
    path: &'a str,
    text: Option<&'a str>,
}

impl Plan<'_> {
    fn line(&self, table: &str, key: &str) -> Option<usize> {
        self.text.and_then(|t| key_line(t, table, key))
    }

    fn at_config(&self, table: &str, key: &str, msg: String, hint: String) -> Diagnostic {
        Diagnostic::new(Code::E009, msg)
            .at(self.path, self.line(table, key))
            .hint(hint)
    }

    fn node(&self, ip: IpAddr) -> Option<&Host> {
        self.inv.hosts.iter().find(|h| h.ip == ip)
    }

    fn where_host(&self, h: &Host) -> String {
        format!("`{}` ({}:{})", h.hostname, self.inv.path, h.line)
    }

    /// A free address of the subnet, counting down from its top, for hints.
    fn free_address(&self, net: &IpNet) -> Option<IpAddr> {
        let pool = self.cfg.kubernetes.metallb_pool().and_then(Result::ok);
        let taken = |ip: IpAddr| {
            self.node(ip).is_some()
                || self.cfg.vips.values().any(|&v| v == ip)
                || pool.is_some_and(|p| p.contains(ip))
                || reserved(net, ip).is_some()
        };
        net.hosts().rev().take(4096).find(|&ip| !taken(ip))
    }

    fn free_hint(&self, what: &str) -> String {
        match self.cfg.cluster.subnet {
            Some(net) => match self.free_address(&net) {
                Some(ip) => format!(
                    "choose an unused address inside {net} for {what}, e.g. {ip} (check it is \
                     free with `ping -c 2 {ip}`)"
                ),
                None => format!("choose an unused address inside {net} for {what}"),
            },
            None => format!("choose an unused address for {what}"),
        }
    }

    fn check(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let subnet = self.cfg.cluster.subnet;
        let pool = self.cfg.kubernetes.metallb_pool().and_then(Result::ok);

        if let Some(net) = subnet {
            for h in &self.inv.hosts {
                let problem = if !net.contains(&h.ip) {
                    Some(format!("is outside [cluster] subnet {net}"))
                } else {
                    reserved(&net, h.ip).map(|r| format!("is the {r} of [cluster] subnet {net}"))
                };
                if let Some(p) = problem {
                    out.push(
                        Diagnostic::new(
                            Code::E009,
                            format!("host `{}` address {} {p}", h.hostname, h.ip),
                        )
                        .at(&self.inv.path, Some(h.line).filter(|&l| l > 0))
                        .on_host(&h.hostname)
                        .hint(format!(
                            "fix the host's ip column, or set `subnet` in {} to the network \
                             the nodes really share",
                            self.path
                        )),
                    );
                }
            }
        }

        let mut seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
        for (name, &vip) in &self.cfg.vips {
            let what = format!("the `{name}` VIP");
            if let Some(h) = self.node(vip) {
                out.push(self.at_config(
                    "vips",
                    name,
                    format!(
                        "[vips] {name} = {vip} is the address of host {}",
                        self.where_host(h)
                    ),
                    format!(
                        "a VIP moves between nodes and must belong to none; {}",
                        self.free_hint(&what)
                    ),
                ));
            }
            if let Some(other) = seen.get(&vip) {
                out.push(self.at_config(
                    "vips",
                    name,
                    format!("[vips] {name} = {vip} is also the VIP of `{other}`"),
                    format!("each front needs its own VIP; {}", self.free_hint(&what)),
                ));
            } else {
                seen.insert(vip, name);
            }
            if let Some(net) = subnet {
                if !net.contains(&vip) {
                    out.push(self.at_config(
                        "vips",
                        name,
                        format!("[vips] {name} = {vip} is outside [cluster] subnet {net}"),
                        format!(
                            "VRRP can only announce an address of the nodes' network; {}",
                            self.free_hint(&what)
                        ),
                    ));
                } else if let Some(r) = reserved(&net, vip) {
                    out.push(self.at_config(
                        "vips",
                        name,
                        format!("[vips] {name} = {vip} is the {r} of [cluster] subnet {net}"),
                        self.free_hint(&what),
                    ));
                }
            }
            if let Some(p) = pool.filter(|p| p.contains(vip)) {
                out.push(
                    self.at_config(
                        "vips",
                        name,
                        format!("[vips] {name} = {vip} lies inside the MetalLB range {p}"),
                        "MetalLB would hand the VIP to a Kubernetes service; move the VIP out of \
                     [kubernetes] metallb_range or shrink the range"
                            .into(),
                    ),
                );
            }
        }

        if let Some(p) = pool {
            let nodes: Vec<String> = self
                .inv
                .hosts
                .iter()
                .filter(|h| p.contains(h.ip))
                .map(|h| format!("{} {}", self.where_host(h), h.ip))
                .collect();
            if !nodes.is_empty() {
                out.push(self.at_config(
                    "kubernetes",
                    "metallb_range",
                    format!(
                        "[kubernetes] metallb_range {p} overlaps node address{}: {}",
                        if nodes.len() == 1 { "" } else { "es" },
                        nodes.join(", ")
                    ),
                    "MetalLB would answer ARP for a node's own address; choose a range of free \
                     addresses that no host in the inventory uses"
                        .into(),
                ));
            }
            if let Some(net) = subnet {
                if !p.inside(&net) {
                    out.push(self.at_config(
                        "kubernetes",
                        "metallb_range",
                        format!(
                            "[kubernetes] metallb_range {p} is not inside [cluster] subnet {net}"
                        ),
                        format!(
                            "MetalLB (layer 2) can only announce addresses of the nodes' network; \
                             choose a range of free addresses inside {net}"
                        ),
                    ));
                } else if let Some(ip) = [net.network(), net.broadcast()]
                    .into_iter()
                    .find(|&ip| reserved(&net, ip).is_some() && p.contains(ip))
                {
                    out.push(
                        self.at_config(
                            "kubernetes",
                            "metallb_range",
                            format!(
                            "[kubernetes] metallb_range {p} includes {ip}, the {} of [cluster] \
                             subnet {net}",
                            reserved(&net, ip).unwrap_or("reserved address")
                        ),
                            "start the range above the network address and end it below the \
                         broadcast address"
                                .into(),
                        ),
                    );
                }
            }
        }

        let k = &self.cfg.kubernetes;
        let cidrs: Vec<(&str, IpNet)> =
            [("pod_cidr", &k.pod_cidr), ("service_cidr", &k.service_cidr)]
                .into_iter()
                .filter_map(|(key, v)| v.parse::<IpNet>().ok().map(|n| (key, n)))
                .collect();
        if let Some(net) = subnet {
            for &(key, c) in &cidrs {
                if overlap(&net, &c) {
                    out.push(self.at_config(
                        "kubernetes",
                        key,
                        format!("[kubernetes] {key} {c} overlaps [cluster] subnet {net}"),
                        "Kubernetes would route node addresses into the cluster network; pick a \
                         private range the nodes do not use (k3s defaults: 10.42.0.0/16 for \
                         pods, 10.43.0.0/16 for services)"
                            .into(),
                    ));
                }
            }
        }
        if let [(_, pods), (key, svc)] = cidrs[..] {
            if overlap(&pods, &svc) {
                out.push(self.at_config(
                    "kubernetes",
                    key,
                    format!("[kubernetes] service_cidr {svc} overlaps pod_cidr {pods}"),
                    "give pods and services separate ranges".into(),
                ));
            }
        }
        out
    }
}

/// Whether two CIDR blocks share an address (aligned blocks nest or are disjoint).
fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The network or broadcast address of an IPv4 subnet of /30 or wider, named.
fn reserved(net: &IpNet, ip: IpAddr) -> Option<&'static str> {
    match net {
        IpNet::V4(n) if n.prefix_len() <= 30 => {
            if ip == IpAddr::V4(n.network()) {
                Some("network address")
            } else if ip == IpAddr::V4(n.broadcast()) {
                Some("broadcast address")
            } else {
                None
            }
        }
        _ => None,
    }
}
