//! kubeadm: containerd with the systemd cgroup driver, the upstream apt repository (pinned
//! key, pinned package version), the first master's InitConfiguration +
//! ClusterConfiguration, and the JoinConfiguration the cluster step writes for each joiner.

use kbz_core::component::ComponentError;
use kbz_core::{Context, Host, Resource, Role};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{pins, Kubernetes, API_PORT, TOKEN_SECRET};

/// containerd's configuration.
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The apt key of the upstream repository.
pub const APT_KEY: &str = "/etc/apt/keyrings/kubernetes-apt-keyring.asc";
/// The apt source.
pub const APT_SOURCE: &str = "/etc/apt/sources.list.d/kubernetes.list";
/// The apt preference pinning the package version.
pub const APT_PIN: &str = "/etc/apt/preferences.d/kbz-kubernetes";
/// The first master's kubeadm configuration (0600).
pub const INIT_CONFIG: &str = "/etc/kubernetes/kbz/kubeadm.yaml";
/// A joiner's configuration (0600), written by the cluster step.
pub const JOIN_CONFIG: &str = "/etc/kubernetes/kbz/join.yaml";
/// The packages.
pub const PACKAGES: &[&str] = &["containerd", "kubelet", "kubeadm", "kubectl"];
/// Where helm is installed from its pinned tarball.
pub const HELM: &str = "/usr/local/bin/helm";

const CONTAINERD_TEMPLATE: &str = include_str!("../templates/containerd-config.toml.hbs");
const INIT_TEMPLATE: &str = include_str!("../templates/kubeadm-init.yaml.hbs");
const JOIN_TEMPLATE: &str = include_str!("../templates/kubeadm-join.yaml.hbs");

/// The bootstrap token and certificate key, derived from the `kubernetes_token` secret.
#[derive(Clone)]
pub struct KubeadmSecrets {
    /// `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: String,
    /// 64 hex digits (AES-256 key of the uploaded certificates).
    pub certificate_key: String,
}

impl std::fmt::Debug for KubeadmSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeadmSecrets(****)")
    }
}

impl KubeadmSecrets {
    /// Derives both from the generated secret (stable across runs).
    pub fn of(ctx: &Context) -> Result<KubeadmSecrets, ComponentError> {
        let seed = ctx.secret(TOKEN_SECRET)?;
        let h = |label: &str| hex::encode(Sha256::digest(format!("{label}:{}", seed.expose())));
        let t = h("kbz-kubeadm-token");
        Ok(KubeadmSecrets {
            token: format!("{}.{}", &t[..6], &t[6..22]),
            certificate_key: h("kbz-kubeadm-certificate-key"),
        })
    }
}

fn endpoint(ctx: &Context) -> Result<String, ComponentError> {
    Kubernetes::api_address(ctx)
        .map(|ip| kbz_core::net::host_port(ip, API_PORT))
        .ok_or_else(|| ComponentError::Render {
            template: "kubeadm".into(),
            reason: "no k8s_api VIP and no k8s-master host".into(),
        })
}

/// containerd's config.toml.
pub fn containerd_config(ctx: &Context) -> Result<String, ComponentError> {
    kbz_core::template::render(
        "containerd-config.toml.hbs",
        CONTAINERD_TEMPLATE,
        &json!({ "mirror": ctx.config.kubernetes.registry_mirror }),
    )
}

/// The Kubernetes version kubeadm deploys (`v1.31.4` for package `1.31.4-1.1`).
pub fn kubernetes_version(ctx: &Context) -> String {
    let pkg = package_version(ctx);
    format!("v{}", pkg.split('-').next().unwrap_or(&pkg))
}

/// The pinned package version (`[versions] kubeadm`, else the tested default).
pub fn package_version(ctx: &Context) -> String {
    ctx.config
        .versions
        .get("kubeadm")
        .cloned()
        .unwrap_or_else(|| pins::KUBEADM_PACKAGE_VERSION.to_string())
}

/// The first master's configuration.
pub fn init_config(ctx: &Context, host: &Host) -> Result<String, ComponentError> {
    let s = KubeadmSecrets::of(ctx)?;
    let mut sans = Vec::new();
    if let Some(vip) = ctx.config.vips.get("k8s_api") {
        sans.push(vip.to_string());
    }
    for m in Kubernetes::masters(ctx) {
        sans.push(m.ip.to_string());
        sans.push(m.hostname.clone());
    }
    let k = &ctx.config.kubernetes;
    kbz_core::template::render(
        "kubeadm-init.yaml.hbs",
        INIT_TEMPLATE,
        &json!({
            "token": s.token,
            "certificate_key": s.certificate_key,
            "node_ip": host.ip.to_string(),
            "node_name": host.hostname,
            "cluster_name": ctx.config.cluster.slug(),
            "kubernetes_version": kubernetes_version(ctx),
            "endpoint": endpoint(ctx)?,
            "cert_sans": sans,
            "pod_cidr": k.pod_cidr,
            "service_cidr": k.service_cidr,
        }),
    )
}

/// A joiner's configuration; `ca_hash` is `sha256:HEX` of the cluster CA's public key.
pub fn join_config(ctx: &Context, host: &Host, ca_hash: &str) -> Result<String, ComponentError> {
    let s = KubeadmSecrets::of(ctx)?;
    kbz_core::template::render(
        "kubeadm-join.yaml.hbs",
        JOIN_TEMPLATE,
        &json!({
            "endpoint": endpoint(ctx)?,
            "token": s.token,
            "ca_hash": ca_hash,
            "node_name": host.hostname,
            "node_ip": host.ip.to_string(),
            "control_plane": host.has(Role::K8sMaster),
            "certificate_key": s.certificate_key,
        }),
    )
}

/// Resources of one kubeadm node, in apply order.
pub fn desired(ctx: &Context, host: &Host, first: bool) -> Result<Vec<Resource>, ComponentError> {
    let stream = pins::KUBEADM_STREAM;
    let key = ctx.config.artifact(&pins::kubernetes_apt_key());
    let mut r = vec![
        Resource::Directory { path: "/etc/apt/keyrings".into(), mode: 0o755, owner: "root:root".into() },
        Resource::artifact(APT_KEY, &key, 0o644),
        Resource::file(
            APT_SOURCE,
            format!(
                "# Upstream Kubernetes packages ({stream}), added by kbz.\ndeb [signed-by={APT_KEY}] https://pkgs.k8s.io/core:/stable:/{stream}/deb/ /\n"
            ),
            0o644,
        ),
        Resource::file(
            APT_PIN,
            format!(
                "# kbz pins the Kubernetes packages to the tested version.\nPackage: kubelet kubeadm kubectl\nPin: version {}\nPin-Priority: 1001\n",
                package_version(ctx)
            ),
            0o644,
        ),
        Resource::file(CONTAINERD_CONFIG, containerd_config(ctx)?, 0o644),
    ];
    r.extend(PACKAGES.iter().map(|p| Resource::package(p)));
    r.push(Resource::service("containerd", &[CONTAINERD_CONFIG]));
    // kubelet restarts in a loop until kubeadm init/join writes its configuration.
    r.push(Resource::service("kubelet", &[]));
    if host.has(Role::K8sMaster) {
        let helm = ctx.config.artifact(&pins::helm());
        let tarball = format!("{}/helm-{}.tar.gz", crate::MANIFEST_DIR, helm.version);
        r.push(Resource::Directory {
            path: "/etc/kubernetes/kbz".into(),
            mode: 0o700,
            owner: "root:root".into(),
        });
        if first {
            r.push(Resource::file(INIT_CONFIG, init_config(ctx, host)?, 0o600));
        }
        r.push(Resource::Directory {
            path: crate::MANIFEST_DIR.into(),
            mode: 0o700,
            owner: "root:root".into(),
        });
        r.push(Resource::artifact(&tarball, &helm, 0o644));
        r.push(Resource::Command {
            id: "helm-install".into(),
            script: format!(
                "tar -xzf {tarball} -C /usr/local/bin --strip-components=1 linux-amd64/helm && chmod 0755 {HELM}"
            ),
            unless: Some(format!("{HELM} version --short 2>/dev/null | grep -q '^{}+'", helm.version)),
            creates: None,
            undo: Some(format!("rm -f {HELM}")),
        });
    }
    Ok(r)
}

/// Resources that remove kbz's kubeadm files and stop the node (packages and cluster data
/// stay: `kubeadm reset` is the operator's decision).
pub fn uninstall(ctx: &Context, host: &Host) -> Vec<Resource> {
    let mut r = vec![
        Resource::stopped_service("kubelet"),
        Resource::stopped_service("containerd"),
        Resource::absent_file(CONTAINERD_CONFIG),
        Resource::absent_file(APT_SOURCE),
        Resource::absent_file(APT_PIN),
        Resource::absent_artifact(APT_KEY, &ctx.config.artifact(&pins::kubernetes_apt_key())),
    ];
    if host.has(Role::K8sMaster) {
        let helm = ctx.config.artifact(&pins::helm());
        r.push(Resource::absent_file(INIT_CONFIG));
        r.push(Resource::absent_file(JOIN_CONFIG));
        r.push(Resource::absent_artifact(
            &format!("{}/helm-{}.tar.gz", crate::MANIFEST_DIR, helm.version),
            &helm,
        ));
    } else {
        r.push(Resource::absent_file(JOIN_CONFIG));
    }
    r
}

/// One member of kubeadm's stacked etcd, from `etcdctl member list` (simple format: `ID,
/// STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER`). kubeadm names each member after
/// its node; a member that never started has no name yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// Hex member id (what `member remove` takes).
    pub id: String,
    /// `started` or `unstarted`.
    pub status: String,
    /// The node name (empty while unstarted).
    pub name: String,
    /// Peer URLs (`https://IP:2380`).
    pub peer_urls: Vec<String>,
}

impl EtcdMember {
    /// The hosts of its peer URLs.
    pub fn peer_hosts(&self) -> Vec<String> {
        self.peer_urls
            .iter()
            .filter_map(|u| {
                let rest = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
                let host = rest.rsplit_once(':').map(|(h, _)| h).unwrap_or(rest);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (!host.is_empty()).then(|| host.to_string())
            })
            .collect()
    }
}

/// Parses `etcdctl member list` (simple format); lines that are not members are skipped.
pub fn parse_member_list(out: &str) -> Vec<EtcdMember> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(", ").map(str::trim).collect();
            if f.len() < 4 || f[0].is_empty() || !f[0].bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            Some(EtcdMember {
                id: f[0].to_string(),
                status: f[1].to_string(),
                name: f[2].to_string(),
                peer_urls: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// `etcdctl ARGS` inside the etcd static pod of master `node`, against its local member with
/// the kubeadm etcd CA and the healthcheck client certificate (the pod mounts
/// `/etc/kubernetes/pki/etcd`; the etcd image ships etcdctl).
pub fn etcdctl(node: &str, args: &str) -> String {
    format!(
        "kubectl --kubeconfig=/etc/kubernetes/admin.conf -n kube-system exec {} -- etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key {args} 2>&1",
        kbz_core::shell::quote(&format!("etcd-{node}"))
    )
}

#[cfg(test)]
mod member_tests {
    use super::*;

    #[test]
    fn etcdctl_member_list_from_captured_output() {
        let out = "8e9e05c52164694d, started, k8s-m1, https://192.0.2.41:2380, https://192.0.2.41:2379, false\n2a1d6d3e5b1f0c77, started, k8s-m3, https://192.0.2.43:2380, https://192.0.2.43:2379, false\n5f2a0bb0f0c1e3a9, unstarted, , https://[2001:db8::44]:2380, , false\n{\"level\":\"warn\"}\n";
        let m = parse_member_list(out);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[1].id.as_str(), m[1].status.as_str(), m[1].name.as_str()),
            ("2a1d6d3e5b1f0c77", "started", "k8s-m3")
        );
        assert_eq!(m[0].peer_hosts(), ["192.0.2.41"]);
        assert_eq!(
            (m[2].name.as_str(), m[2].peer_hosts()),
            ("", vec!["2001:db8::44".to_string()])
        );
        let s = etcdctl("k8s-m1", "member list");
        assert!(
            s.contains("exec 'etcd-k8s-m1' -- etcdctl --endpoints=https://127.0.0.1:2379"),
            "{s}"
        );
        kbz_testkit::assert_valid_sh(&[s]);
    }
}
