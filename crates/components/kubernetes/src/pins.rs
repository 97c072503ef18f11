//! The pinned upstream artifacts of module 10 (defaults; `[artifacts.NAME]` in kbz.toml
//! overrides each). Nothing upstream is copied into the repository: each file is fetched into
//! the controller's download cache at install time, verified, and pushed to the hosts.
//!
//! The K3s sha256 values are those of the release's `sha256sum-amd64.txt`. Upstream
//! publishes no checksum for the raw manifests, charts and keys below, so their default pin
//! has no sha256: a real install refuses to fetch them (E030) until the operator computes it
//! (`curl -fsSL URL | sha256sum`) and sets `[artifacts.NAME] sha256`. Dry-runs plan them.
//! Only amd64 hosts are pinned.

use kbz_core::artifact::ArtifactPin;

/// K3s version of the default pins.
pub const K3S_VERSION: &str = "v1.34.2+k3s1";

/// The K3s binary.
pub fn k3s() -> ArtifactPin {
    ArtifactPin::new(
        "k3s",
        K3S_VERSION,
        "15811d34187e03fe29d0e46108c42cc33e62cec1b3d9d80f50944536ebcad40a",
        "https://github.com/k3s-io/k3s/releases/download/{version}/k3s",
    )
}

/// The K3s air-gap images tarball (loaded by K3s from `agent/images/` at start).
pub fn k3s_images() -> ArtifactPin {
    ArtifactPin::new(
        "k3s-images",
        K3S_VERSION,
        "24359781bd775f513691e98031853d79eac53e265f7d72d1e7325df4f3b18eb0",
        "https://github.com/k3s-io/k3s/releases/download/{version}/k3s-airgap-images-amd64.tar.zst",
    )
}

/// Calico's tigera-operator manifest (the operator and its CRDs).
pub fn calico() -> ArtifactPin {
    ArtifactPin::new(
        "calico",
        "v3.29.1",
        "",
        "https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/tigera-operator.yaml",
    )
}

/// MetalLB's native manifest (controller, speakers, CRDs, webhook).
pub fn metallb() -> ArtifactPin {
    ArtifactPin::new(
        "metallb",
        "v0.14.9",
        "",
        "https://raw.githubusercontent.com/metallb/metallb/{version}/config/manifests/metallb-native.yaml",
    )
}

/// ingress-nginx for clouds (a LoadBalancer service, served by MetalLB here).
pub fn ingress_nginx() -> ArtifactPin {
    ArtifactPin::new(
        "ingress-nginx",
        "controller-v1.12.0",
        "",
        "https://raw.githubusercontent.com/kubernetes/ingress-nginx/{version}/deploy/static/provider/cloud/deploy.yaml",
    )
}

/// cert-manager (Rancher's certificates).
pub fn cert_manager() -> ArtifactPin {
    ArtifactPin::new(
        "cert-manager",
        "v1.16.2",
        "",
        "https://github.com/cert-manager/cert-manager/releases/download/{version}/cert-manager.yaml",
    )
}

/// The kube-prometheus-stack chart: Prometheus, Alertmanager, Grafana, node-exporter.
pub fn monitoring_chart() -> ArtifactPin {
    ArtifactPin::new(
        "kube-prometheus-stack",
        "66.3.1",
        "",
        "https://github.com/prometheus-community/helm-charts/releases/download/kube-prometheus-stack-{version}/kube-prometheus-stack-{version}.tgz",
    )
}

/// The Rancher chart.
pub fn rancher_chart() -> ArtifactPin {
    ArtifactPin::new(
        "rancher",
        "2.10.1",
        "",
        "https://releases.rancher.com/server-charts/stable/rancher-{version}.tgz",
    )
}

/// Helm, for charts on kubeadm clusters (K3s has its own helm controller).
pub fn helm() -> ArtifactPin {
    ArtifactPin::new(
        "helm",
        "v3.16.3",
        "",
        "https://get.helm.sh/helm-{version}-linux-amd64.tar.gz",
    )
}

/// Minor release stream of the upstream Kubernetes apt repository (kubeadm).
pub const KUBEADM_STREAM: &str = "v1.31";
/// The pinned kubelet/kubeadm/kubectl package version.
pub const KUBEADM_PACKAGE_VERSION: &str = "1.31.4-1.1";

/// The signing key of the upstream Kubernetes apt repository for [`KUBEADM_STREAM`].
pub fn kubernetes_apt_key() -> ArtifactPin {
    ArtifactPin::new(
        "kubernetes-apt-key",
        KUBEADM_STREAM,
        "",
        "https://pkgs.k8s.io/core:/stable:/{version}/deb/Release.key",
    )
}

/// Every default pin, for validation and docs.
pub fn all() -> Vec<ArtifactPin> {
    vec![
        k3s(),
        k3s_images(),
        calico(),
        metallb(),
        ingress_nginx(),
        cert_manager(),
        monitoring_chart(),
        rancher_chart(),
        helm(),
        kubernetes_apt_key(),
    ]
}
