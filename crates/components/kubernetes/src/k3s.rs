//! K3s: per-node `/etc/rancher/k3s/config.yaml`, the token file, kbz's systemd unit, the
//! optional `registries.yaml`, and the pinned binary and images.

use kbz_core::component::ComponentError;
use kbz_core::{Context, Host, Resource, Role};
use serde_json::json;

use crate::{addons, pins, Kubernetes, API_PORT, TOKEN_SECRET};

/// The binary.
pub const BIN: &str = "/usr/local/bin/k3s";
/// The images tarball K3s imports at start.
pub const IMAGES: &str = "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst";
/// Per-node configuration.
pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// The join token (0600).
pub const TOKEN_FILE: &str = "/etc/rancher/k3s/kbz-token";
/// Registry mirrors.
pub const REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";

const CONFIG_TEMPLATE: &str = include_str!("../templates/k3s-config.yaml.hbs");
const UNIT_TEMPLATE: &str = include_str!("../templates/k3s.service.hbs");
const REGISTRIES_TEMPLATE: &str = include_str!("../templates/registries.yaml.hbs");

/// The unit name on this host: `k3s` on servers, `k3s-agent` on agents.
pub fn service(host: &Host) -> &'static str {
    if host.has(Role::K8sMaster) {
        "k3s"
    } else {
        "k3s-agent"
    }
}

fn unit_path(host: &Host) -> String {
    format!("/etc/systemd/system/{}.service", service(host))
}

/// `config.yaml` for one node.
pub fn k3s_config(ctx: &Context, host: &Host) -> Result<String, ComponentError> {
    let masters = Kubernetes::masters(ctx);
    let first = masters.first().ok_or_else(|| ComponentError::Render {
        template: "k3s-config.yaml.hbs".into(),
        reason: "no host has the k8s-master role".into(),
    })?;
    let server = host.has(Role::K8sMaster);
    let cluster_init = server && first.hostname == host.hostname;
    // Servers join the bootstrap server directly (the VIP may not front a server yet);
    // agents register through the API address (the VIP).
    let server_url = if cluster_init {
        None
    } else if server {
        Some(format!(
            "https://{}",
            kbz_core::net::host_port(first.ip, API_PORT)
        ))
    } else {
        Kubernetes::api_url(ctx)
    };
    let mut tls_san: Vec<String> = Vec::new();
    if let Some(vip) = ctx.config.vips.get("k8s_api") {
        tls_san.push(vip.to_string());
    }
    tls_san.push(host.ip.to_string());
    tls_san.push(host.hostname.clone());
    let mut disable = Vec::new();
    if addons::enabled(ctx, "metallb") {
        disable.push("servicelb");
    }
    if addons::enabled(ctx, "ingress-nginx") {
        disable.push("traefik");
    }
    let k = &ctx.config.kubernetes;
    kbz_core::template::render(
        "k3s-config.yaml.hbs",
        CONFIG_TEMPLATE,
        &json!({
            "node_name": host.hostname,
            "node_ip": host.ip.to_string(),
            "role": if server { "server" } else { "agent" },
            "is_server": server,
            "token_file": TOKEN_FILE,
            "cluster_init": cluster_init,
            "server_url": server_url,
            "pod_cidr": k.pod_cidr,
            "service_cidr": k.service_cidr,
            "tls_san": tls_san,
            "disable": disable,
            "calico": addons::enabled(ctx, "calico"),
        }),
    )
}

/// kbz's unit for this node.
pub fn k3s_unit(host: &Host) -> Result<String, ComponentError> {
    let mode = if host.has(Role::K8sMaster) {
        "server"
    } else {
        "agent"
    };
    kbz_core::template::render("k3s.service.hbs", UNIT_TEMPLATE, &json!({ "mode": mode }))
}

/// `registries.yaml` when `[kubernetes] registry_mirror` is set.
pub fn registries_yaml(ctx: &Context) -> Result<Option<String>, ComponentError> {
    let Some(mirror) = &ctx.config.kubernetes.registry_mirror else {
        return Ok(None);
    };
    kbz_core::template::render(
        "registries.yaml.hbs",
        REGISTRIES_TEMPLATE,
        &json!({
            "mirror": mirror,
            "registries": ["docker.io", "quay.io", "registry.k8s.io", "ghcr.io"],
        }),
    )
    .map(Some)
}

/// Resources of one K3s node, in apply order.
pub fn desired(ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
    let svc = service(host);
    let unit = unit_path(host);
    let token = ctx.secret(TOKEN_SECRET)?;
    let mut r = vec![
        Resource::artifact(BIN, &ctx.config.artifact(&pins::k3s()), 0o755),
        Resource::artifact(IMAGES, &ctx.config.artifact(&pins::k3s_images()), 0o644),
        Resource::file(TOKEN_FILE, format!("{}\n", token.expose()), 0o600),
        Resource::file(CONFIG, k3s_config(ctx, host)?, 0o600),
    ];
    let mut restart_on = vec![BIN.to_string(), CONFIG.to_string(), unit.clone()];
    match registries_yaml(ctx)? {
        Some(text) => {
            r.push(Resource::file(REGISTRIES, text, 0o644));
            restart_on.push(REGISTRIES.into());
        }
        None => r.push(Resource::absent_file(REGISTRIES)),
    }
    r.push(Resource::file(&unit, k3s_unit(host)?, 0o644));
    r.push(Resource::Command {
        id: format!("{svc}-unit-reload"),
        script: "systemctl daemon-reload".into(),
        unless: Some(format!(
            "[ \"$(systemctl show -p NeedDaemonReload --value {svc}.service)\" != yes ]"
        )),
        creates: None,
        undo: Some("systemctl daemon-reload".into()),
    });
    let restart: Vec<&str> = restart_on.iter().map(String::as_str).collect();
    r.push(Resource::service(svc, &restart));
    Ok(r)
}

/// Resources that remove K3s from a node (cluster data stays).
pub fn uninstall(ctx: &Context, host: &Host) -> Vec<Resource> {
    vec![
        Resource::stopped_service(service(host)),
        Resource::absent_file(&unit_path(host)),
        Resource::absent_file(CONFIG),
        Resource::absent_file(TOKEN_FILE),
        Resource::absent_file(REGISTRIES),
        Resource::absent_artifact(BIN, &ctx.config.artifact(&pins::k3s())),
        Resource::absent_artifact(IMAGES, &ctx.config.artifact(&pins::k3s_images())),
    ]
}
