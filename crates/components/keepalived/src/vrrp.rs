//! Pure planning of the VRRP instances: which VIPs, their virtual_router_ids, each lb host's
//! priority and peers, and the rendered keepalived.conf.

use kbz_core::component::ComponentError;
use kbz_core::config::VIP_NAMES;
use kbz_core::{Context, Host, Role};
use kbz_errors::{Code, Diagnostic};
use serde::Serialize;
use std::net::IpAddr;

use crate::{AUTH_SECRET, CHECK_SCRIPT_PATH, PEERS_SCRIPT_PATH, VRID_BASE_DEFAULT, VRID_LABEL};

const TEMPLATE: &str = include_str!("../templates/keepalived.conf.hbs");

/// Highest priority, given to the first lb host of the inventory.
const TOP_PRIORITY: usize = 150;

/// One VRRP instance: a VIP of kbz.toml `[vips]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VipInstance {
    /// The `[vips]` key (`postgres`).
    pub key: String,
    /// The address.
    pub vip: IpAddr,
    /// `virtual_router_id`.
    pub vrid: u8,
}

/// The configured VIPs in [`VIP_NAMES`] order, each with its `virtual_router_id`: the base
/// (51, or the lb hosts' `vrid_base` label) plus the name's position in [`VIP_NAMES`], so an
/// id never changes when another VIP is added or removed.
pub fn instances(ctx: &Context) -> Result<Vec<VipInstance>, ComponentError> {
    let base = vrid_base(ctx)?;
    if let Some(unknown) = ctx
        .config
        .vips
        .keys()
        .find(|k| !VIP_NAMES.contains(&k.as_str()))
    {
        return Err(ComponentError::Input(
            Diagnostic::new(
                Code::E008,
                format!("unknown VIP name `{unknown}` in [vips]"),
            )
            .hint(format!("valid names: {}", VIP_NAMES.join(", "))),
        ));
    }
    let mut out = Vec::new();
    for (i, name) in VIP_NAMES.iter().enumerate() {
        let Some(vip) = ctx.config.vips.get(*name) else {
            continue;
        };
        let vrid = u8::try_from(usize::from(base) + i)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| vrid_range_error(ctx, base))?;
        out.push(VipInstance {
            key: (*name).to_string(),
            vip: *vip,
            vrid,
        });
    }
    Ok(out)
}

fn vrid_range_error(ctx: &Context, base: u8) -> ComponentError {
    let top = 255 - (VIP_NAMES.len() - 1);
    ComponentError::Input(
        Diagnostic::new(
            Code::E005,
            format!(
                "label {VRID_LABEL}={base} puts a virtual_router_id above 255 ({} VIP names \
                 need {} consecutive ids)",
                VIP_NAMES.len(),
                VIP_NAMES.len()
            ),
        )
        .at(&ctx.inventory.path, None)
        .hint(format!("use a {VRID_LABEL} from 1 to {top}")),
    )
}

/// The first `virtual_router_id`: the `vrid_base` label of the lb hosts (every lb host that
/// sets it must agree, and then all must set it) or [`VRID_BASE_DEFAULT`].
fn vrid_base(ctx: &Context) -> Result<u8, ComponentError> {
    let lbs = ctx.inventory.with_role(Role::Lb);
    let set: Vec<(&Host, &String)> = lbs
        .iter()
        .filter_map(|h| h.labels.get(VRID_LABEL).map(|v| (*h, v)))
        .collect();
    let Some((first_host, first)) = set.first() else {
        return Ok(VRID_BASE_DEFAULT);
    };
    let bad = |h: &Host, msg: String| {
        ComponentError::Input(
            Diagnostic::new(Code::E005, msg)
                .at(&ctx.inventory.path, Some(h.line))
                .on_host(&h.hostname)
                .hint(format!(
                    "give every lb host the same {VRID_LABEL}=N label (1 to {}), or none for \
                     the default {VRID_BASE_DEFAULT}",
                    255 - (VIP_NAMES.len() - 1)
                )),
        )
    };
    if set.len() != lbs.len() || set.iter().any(|(_, v)| v != first) {
        return Err(bad(
            first_host,
            format!(
                "the lb hosts disagree on the {VRID_LABEL} label (VRRP peers must use the same \
                 virtual_router_ids)"
            ),
        ));
    }
    let base: u8 = first.parse().ok().filter(|b| *b >= 1).ok_or_else(|| {
        bad(
            first_host,
            format!("{VRID_LABEL}={first} is not a number from 1 to 255"),
        )
    })?;
    Ok(base)
}

/// The host's priority: 150 for the first lb host of the inventory, 10 less for each next
/// one (1 less when there are more than 15 lb hosts).
pub fn priority(ctx: &Context, host: &Host) -> Result<u8, ComponentError> {
    let lbs = ctx.inventory.with_role(Role::Lb);
    let render_err = |reason: String| ComponentError::Render {
        template: "keepalived.conf.hbs".into(),
        reason,
    };
    let index = lbs
        .iter()
        .position(|h| h.hostname == host.hostname)
        .ok_or_else(|| render_err(format!("{} is not an lb host", host.hostname)))?;
    let step = if lbs.len() <= 15 { 10 } else { 1 };
    TOP_PRIORITY
        .checked_sub(step * index)
        .filter(|p| *p >= 1)
        .and_then(|p| u8::try_from(p).ok())
        .ok_or_else(|| {
            render_err(format!(
                "{} lb hosts are more than VRRP priorities can order (at most {TOP_PRIORITY})",
                lbs.len()
            ))
        })
}

#[derive(Serialize)]
struct InstanceData {
    key: String,
    name: String,
    vrid: u8,
    vip: String,
    interface: String,
    priority: u8,
    unicast: bool,
    src_ip: String,
    peers: Vec<String>,
    auth: bool,
    auth_pass: String,
}

#[derive(Serialize)]
struct ConfData {
    hostname: String,
    check_script: &'static str,
    /// The `chk_peers` command line (empty with fewer than 3 lb hosts: no majority to lose).
    peers_check: String,
    lb_hosts: usize,
    quorum: usize,
    instances: Vec<InstanceData>,
}

/// Renders /etc/keepalived/keepalived.conf for one lb host.
pub fn render_config(ctx: &Context, host: &Host) -> Result<String, ComponentError> {
    let vips = instances(ctx)?;
    let priority = priority(ctx, host)?;
    let interface = ctx.interface(host);
    let secret = ctx.secret(AUTH_SECRET)?;
    // VRRPv2 PASS authentication carries at most 8 characters.
    let auth_pass: String = secret.expose().chars().take(8).collect();
    if auth_pass.is_empty()
        || auth_pass.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '#' | '!' | '{' | '}')
        })
    {
        return Err(ComponentError::Input(
            Diagnostic::new(
                Code::E052,
                format!(
                    "secret `{AUTH_SECRET}` is empty or holds characters keepalived.conf cannot \
                     carry (whitespace, quotes, `#`, `!`, braces)"
                ),
            )
            .hint(format!(
                "set `{AUTH_SECRET}` to letters and digits in the secrets file, or delete the \
                 line to have one generated"
            )),
        ));
    }
    let peers: Vec<String> = ctx
        .inventory
        .with_role(Role::Lb)
        .iter()
        .filter(|h| h.hostname != host.hostname)
        .map(|h| h.ip.to_string())
        .collect();
    let lb_hosts = peers.len() + 1;
    let quorum = lb_hosts / 2 + 1;
    let peers_check = if lb_hosts >= 3 {
        format!("{PEERS_SCRIPT_PATH} {quorum} {}", peers.join(" "))
    } else {
        String::new()
    };
    let mut data = Vec::new();
    for v in vips {
        if v.vip.is_ipv4() != host.ip.is_ipv4() {
            return Err(ComponentError::Input(
                Diagnostic::new(
                    Code::E009,
                    format!(
                        "VIP {} ({}) and lb host {} ({}) are of different address families; \
                         VRRP adverts for a VIP travel between the lb hosts' addresses",
                        v.key, v.vip, host.hostname, host.ip
                    ),
                )
                .hint("use VIPs of the lb hosts' address family in [vips]"),
            ));
        }
        let prefix = if v.vip.is_ipv4() { 32 } else { 128 };
        data.push(InstanceData {
            name: format!("kbz_{}", v.key),
            key: v.key,
            vrid: v.vrid,
            vip: format!("{}/{prefix}", v.vip),
            interface: interface.clone(),
            priority,
            unicast: !peers.is_empty(),
            src_ip: host.ip.to_string(),
            peers: peers.clone(),
            // keepalived runs IPv6 instances as VRRPv3, which has no authentication.
            auth: v.vip.is_ipv4(),
            auth_pass: auth_pass.clone(),
        });
    }
    kbz_core::template::render(
        "keepalived.conf.hbs",
        TEMPLATE,
        &ConfData {
            hostname: host.hostname.clone(),
            check_script: CHECK_SCRIPT_PATH,
            peers_check,
            lb_hosts,
            quorum,
            instances: data,
        },
    )
}
