//! kbz-kubernetes (module 10): a highly available Kubernetes on the `k8s-master` and
//! `k8s-worker` hosts, K3s (default) or kubeadm (`[kubernetes] flavor`), with the add-ons of
//! `[kubernetes] addons`: Calico, MetalLB, ingress-nginx, Prometheus + Alertmanager + Grafana
//! (kube-prometheus-stack with node-exporter) and Rancher with cert-manager.
//!
//! K3s HA: every master is a K3s server with embedded etcd. The first master in inventory
//! order starts with `cluster-init`; the others join it with the token kbz generates
//! (`kubernetes_token`, in a 0600 token file, never on a command line). Agents (the
//! `k8s-worker` hosts) register through the API VIP (`[vips] k8s_api`, fronted by HAProxy on
//! the lb hosts and named in every server's `tls-san`). The air-gap install K3s documents:
//! the binary and the images tarball are pinned artifacts, K3s runs under kbz's own unit, and
//! an optional `registries.yaml` points the upstream registries at `[kubernetes]
//! registry_mirror`. Hosts are rolled one at a time (servers first, in inventory order), each
//! waited for (`/readyz` on servers, the unit on agents) before the next.
//!
//! kubeadm HA: containerd (Debian's) with the systemd cgroup driver; kubelet, kubeadm and
//! kubectl from the upstream apt repository (its key a pinned artifact, the package version
//! pinned by an apt preference); a ClusterConfiguration with `controlPlaneEndpoint` =
//! VIP:6443. The cluster step runs `kubeadm init --upload-certs` on the first master, then
//! joins the other masters (with the certificate key) and the workers through the VIP,
//! verifying the CA by its key hash. Token and certificate key are derived from the
//! generated `kubernetes_token` secret and only ever sit in 0600 files.
//!
//! Add-ons: upstream manifests and charts are pinned artifacts (see [`pins`]); kbz renders
//! only its own resources ([`addons`]), applies every manifest with `kubectl apply
//! --server-side` only when `kubectl diff --server-side` reports a difference, and waits with
//! `kubectl rollout status` / `kubectl wait`, never a fixed sleep. Failure kinds have codes:
//! E061 API not ready, E062 nodes not Ready, E063 an admission webhook that does not answer,
//! E064 an add-on that does not roll out, E065 a kubeadm init, join or etcd member removal
//! that fails.
//!
//! Uninstall stops the units and removes kbz's files and the artifacts; cluster data
//! (`/var/lib/rancher/k3s`, `/etc/kubernetes`, `/var/lib/etcd`) is left in place.

pub mod addons;
mod cluster;
pub mod health;
mod k3s;
mod kubeadm;
pub mod kubeconfig;
pub mod pins;

pub use cluster::{apply_script, kubectl};
pub use k3s::{k3s_config, k3s_unit, registries_yaml};
pub use kubeadm::{
    containerd_config, init_config, join_config, KubeadmSecrets, INIT_CONFIG as KUBEADM_INIT,
};

use async_trait::async_trait;
use kbz_core::component::{ClusterChange, Component, ComponentError, HostExec};
use kbz_core::health::HealthCheck;
use kbz_core::{Context, Host, Resource, Role};

/// Directory of kbz's manifests on the masters.
pub const MANIFEST_DIR: &str = "/etc/kbz/k8s";
/// Directory of the pinned upstream manifests on the masters.
pub const UPSTREAM_DIR: &str = "/etc/kbz/k8s/upstream";
/// The join secret (K3s token; seed of kubeadm's token and certificate key).
pub const TOKEN_SECRET: &str = "kubernetes_token";
/// The API port.
pub const API_PORT: u16 = 6443;

/// Which distribution `[kubernetes] flavor` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// K3s with embedded etcd.
    K3s,
    /// kubeadm with stacked etcd.
    Kubeadm,
}

impl Flavor {
    /// The configured flavor.
    pub fn of(ctx: &Context) -> Flavor {
        if ctx.config.kubernetes.flavor == "kubeadm" {
            Flavor::Kubeadm
        } else {
            Flavor::K3s
        }
    }

    /// The kubectl prefix on a master, with root's admin credentials of the flavor.
    pub fn kubectl(self) -> &'static str {
        match self {
            Flavor::K3s => "k3s kubectl",
            Flavor::Kubeadm => "kubectl --kubeconfig=/etc/kubernetes/admin.conf",
        }
    }

    /// The admin kubeconfig on every master (0600, root's): its CA and client certificate
    /// are what kbz-failover's API probes through the VIP authenticate with.
    pub fn admin_kubeconfig(self) -> &'static str {
        match self {
            Flavor::K3s => "/etc/rancher/k3s/k3s.yaml",
            Flavor::Kubeadm => "/etc/kubernetes/admin.conf",
        }
    }
}

/// Module 10: Kubernetes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kubernetes;

impl Kubernetes {
    /// Control-plane hosts in inventory order; the first bootstraps the cluster.
    pub fn masters(ctx: &Context) -> Vec<&Host> {
        ctx.inventory.with_role(Role::K8sMaster)
    }

    /// Worker hosts (masters that are also workers count as masters).
    pub fn workers(ctx: &Context) -> Vec<&Host> {
        ctx.inventory
            .with_role(Role::K8sWorker)
            .into_iter()
            .filter(|h| !h.has(Role::K8sMaster))
            .collect()
    }

    /// The address clients and joining nodes use for the API: the `k8s_api` VIP, else the
    /// first master.
    pub fn api_address(ctx: &Context) -> Option<std::net::IpAddr> {
        ctx.config
            .vips
            .get("k8s_api")
            .copied()
            .or_else(|| Kubernetes::masters(ctx).first().map(|h| h.ip))
    }

    /// `https://ADDRESS:6443`.
    pub fn api_url(ctx: &Context) -> Option<String> {
        Kubernetes::api_address(ctx)
            .map(|ip| format!("https://{}", kbz_core::net::host_port(ip, API_PORT)))
    }

    fn is_first_master(ctx: &Context, host: &Host) -> bool {
        Kubernetes::masters(ctx)
            .first()
            .is_some_and(|m| m.hostname == host.hostname)
    }

    /// The upstream manifests of the enabled add-ons: `(add-on, pin, path on the masters)`.
    pub fn upstream_manifests(
        ctx: &Context,
    ) -> Vec<(&'static str, kbz_core::artifact::ArtifactPin, String)> {
        let mut out = Vec::new();
        for (addon, pin) in [
            ("calico", pins::calico()),
            ("metallb", pins::metallb()),
            ("ingress-nginx", pins::ingress_nginx()),
            ("rancher", pins::cert_manager()),
        ] {
            if addons::enabled(ctx, addon) {
                let pin = ctx.config.artifact(&pin);
                let path = format!("{UPSTREAM_DIR}/{}-{}.yaml", pin.name, pin.version);
                out.push((addon, pin, path));
            }
        }
        out
    }

    /// The charts of the enabled add-ons: `(pin, path on the masters)`.
    pub fn charts(ctx: &Context) -> Vec<(kbz_core::artifact::ArtifactPin, String)> {
        let dir = match Flavor::of(ctx) {
            Flavor::K3s => addons::K3S_CHARTS_DIR.to_string(),
            Flavor::Kubeadm => format!("{MANIFEST_DIR}/charts"),
        };
        let mut out = Vec::new();
        for (addon, pin) in [
            ("monitoring", pins::monitoring_chart()),
            ("rancher", pins::rancher_chart()),
        ] {
            if addons::enabled(ctx, addon) {
                let pin = ctx.config.artifact(&pin);
                let path = format!("{dir}/{}", addons::chart_file(&pin));
                out.push((pin, path));
            }
        }
        out
    }

    /// Files every master gets for the add-ons: kbz's manifests, upstream manifests, charts.
    fn addon_resources(ctx: &Context) -> Result<Vec<Resource>, ComponentError> {
        let k3s = Flavor::of(ctx) == Flavor::K3s;
        let mut r = vec![Resource::Directory {
            path: MANIFEST_DIR.into(),
            mode: 0o700,
            owner: "root:root".into(),
        }];
        for (_, pin, path) in Kubernetes::upstream_manifests(ctx) {
            r.push(Resource::artifact(&path, &pin, 0o644));
        }
        for (pin, path) in Kubernetes::charts(ctx) {
            r.push(Resource::artifact(&path, &pin, 0o644));
        }
        for m in addons::manifests(ctx, k3s)? {
            let mode = if m.secret { 0o600 } else { 0o644 };
            r.push(Resource::file(
                &format!("{MANIFEST_DIR}/{}", m.file),
                m.yaml()?,
                mode,
            ));
        }
        if !k3s {
            for (file, _, _, _, values) in addons::helm_values(ctx)? {
                let text =
                    serde_yaml_ng::to_string(&values).map_err(|e| ComponentError::Render {
                        template: file.into(),
                        reason: e.to_string(),
                    })?;
                r.push(Resource::file(
                    &format!("{MANIFEST_DIR}/{file}"),
                    format!("# {file}: helm values rendered by kbz.\n{text}"),
                    0o600,
                ));
            }
        }
        Ok(r)
    }
}

#[async_trait]
impl Component for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn module(&self) -> u8 {
        10
    }

    fn secret_names(&self) -> Vec<String> {
        vec![
            TOKEN_SECRET.into(),
            addons::GRAFANA_PASSWORD.into(),
            addons::RANCHER_PASSWORD.into(),
        ]
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::K8sMaster) || host.has(Role::K8sWorker)
    }

    fn rolling(&self) -> bool {
        true
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let master = host.has(Role::K8sMaster);
        let mut r = match Flavor::of(ctx) {
            Flavor::K3s => k3s::desired(ctx, host)?,
            Flavor::Kubeadm => kubeadm::desired(ctx, host, Kubernetes::is_first_master(ctx, host))?,
        };
        if master {
            // Services come last in the flavor's list; add-on files go before them is not
            // needed: they are only read by the cluster step.
            r.extend(Kubernetes::addon_resources(ctx)?);
        }
        Ok(r)
    }

    async fn host_ready(
        &self,
        ctx: &Context,
        hx: &HostExec,
        _changed: bool,
    ) -> Result<(), ComponentError> {
        cluster::host_ready(ctx, hx).await
    }

    fn uninstall(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let mut r = match Flavor::of(ctx) {
            Flavor::K3s => k3s::uninstall(ctx, host),
            Flavor::Kubeadm => kubeadm::uninstall(ctx, host),
        };
        if host.has(Role::K8sMaster) {
            let k3s = Flavor::of(ctx) == Flavor::K3s;
            for (_, pin, path) in Kubernetes::upstream_manifests(ctx) {
                r.push(Resource::absent_artifact(&path, &pin));
            }
            for (pin, path) in Kubernetes::charts(ctx) {
                r.push(Resource::absent_artifact(&path, &pin));
            }
            for m in addons::manifests(ctx, k3s)? {
                r.push(Resource::absent_file(&format!("{MANIFEST_DIR}/{}", m.file)));
            }
            if !k3s {
                for (file, ..) in addons::helm_values(ctx)? {
                    r.push(Resource::absent_file(&format!("{MANIFEST_DIR}/{file}")));
                }
            }
        }
        Ok(r)
    }

    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        cluster::converge(ctx, hosts).await
    }

    fn health_probes(&self, ctx: &Context, host: &Host) -> Vec<kbz_core::health::Probe> {
        health::probes(ctx, host)
    }

    fn health_checks(
        &self,
        ctx: &Context,
        raw: &kbz_core::health::HealthRaw<'_>,
    ) -> Vec<HealthCheck> {
        health::checks(ctx, raw)
    }

    /// The API server on the masters and the kubelet on every node, on every address
    /// (upstream's defaults, which kbz does not narrow).
    fn listens(&self, ctx: &Context, host: &Host) -> Vec<kbz_core::component::Listen> {
        use kbz_core::component::Listen;
        let any = [std::net::IpAddr::from([0, 0, 0, 0])];
        let (owners, marker): (&[&str], &str) = match Flavor::of(ctx) {
            Flavor::K3s => (&["k3s", "k3s-server", "k3s-agent"], k3s::CONFIG),
            Flavor::Kubeadm => (&["kube-apiserver", "kubelet"], kubeadm::INIT_CONFIG),
        };
        let mut out = Vec::new();
        if host.has(Role::K8sMaster) {
            out.push(
                Listen::new("Kubernetes API server", API_PORT, &any, owners)
                    .marker(marker)
                    .auth("client certificates and tokens"),
            );
        }
        let kubelet = Listen::new("kubelet", 10250, &any, owners)
            .auth("webhook authn/authz against the API server");
        out.push(if Flavor::of(ctx) == Flavor::K3s {
            kubelet.marker(k3s::CONFIG)
        } else {
            kubelet
        });
        out
    }
}
