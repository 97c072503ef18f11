//! The pinned upstream artifacts of module 10 (defaults; `[artifacts.NAME]` in kbz.toml
//! overrides each). Nothing upstream is copied into the repository: each file is fetched into
//! the controller's download cache at install time, verified, and pushed to the hosts.
//!
//! Every sha256 below names where it comes from (nothing here could be downloaded while it
//! was pinned, so each is taken from a published or reproducible source):
//!
//! - raw manifests at a git tag: the sha256 of the file's bytes at that tag (what
//!   raw.githubusercontent.com serves), computed from the upstream repository itself;
//! - release assets: the checksum upstream publishes next to them (`sha256sum-amd64.txt`,
//!   `.sha256sum`), as copied into public pins of the same file;
//! - charts: the `digest` of the chart's entry in the chart repository's `index.yaml` (Helm's
//!   sha256 of the `.tgz`).
//!
//! Two pins have no sha256 and stop a real install with E030 before fetching until the
//! operator computes one (`curl -fsSL URL | sha256sum`) and sets `[artifacts.NAME] sha256`:
//! the Rancher chart (its repository index lives outside any public git repository) and the
//! Kubernetes apt key (upstream re-signs it to extend its expiry, so its bytes change under
//! the same URL). Dry-runs plan them. Only amd64 hosts are pinned.

use kbz_core::artifact::ArtifactPin;

/// K3s version of the default pins.
pub const K3S_VERSION: &str = "v1.34.2+k3s1";

/// The K3s binary. sha256: the v1.34.2+k3s1 release's `sha256sum-amd64.txt`, as a public
/// air-gap download script pins it for this version (stored-index file 26463395177).
pub fn k3s() -> ArtifactPin {
    ArtifactPin::new(
        "k3s",
        K3S_VERSION,
        "15811d34187e03fe29d0e46108c42cc33e62cec1b3d9d80f50944536ebcad40a",
        "https://github.com/k3s-io/k3s/releases/download/{version}/k3s",
    )
}

/// The K3s air-gap images tarball (loaded by K3s from `agent/images/` at start). sha256: as
/// for [`k3s`], the same release checksum file and the same public pin.
pub fn k3s_images() -> ArtifactPin {
    ArtifactPin::new(
        "k3s-images",
        K3S_VERSION,
        "24359781bd775f513691e98031853d79eac53e265f7d72d1e7325df4f3b18eb0",
        "https://github.com/k3s-io/k3s/releases/download/{version}/k3s-airgap-images-amd64.tar.zst",
    )
}

/// Calico's tigera-operator manifest (the operator and its CRDs). sha256: the bytes of
/// `manifests/tigera-operator.yaml` at tag v3.29.1 (commit ddfc3b1e) of projectcalico/calico,
/// 1611103 bytes.
pub fn calico() -> ArtifactPin {
    ArtifactPin::new(
        "calico",
        "v3.29.1",
        "1edc2f2b1acf50fa586c96839353d0e7247c603ee48e68f2a3e4354716de3730",
        "https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/tigera-operator.yaml",
    )
}

/// MetalLB's native manifest (controller, speakers, CRDs, webhook). sha256: the bytes of
/// `config/manifests/metallb-native.yaml` at tag v0.14.9 (commit 5765ee50) of metallb/metallb;
/// a public Nix `fetchurl` of the same URL pins the same hash.
pub fn metallb() -> ArtifactPin {
    ArtifactPin::new(
        "metallb",
        "v0.14.9",
        "951065e85692aa106f1bb5d5a487d9306154923a794ab1d82122881cbaf588e4",
        "https://raw.githubusercontent.com/metallb/metallb/{version}/config/manifests/metallb-native.yaml",
    )
}

/// ingress-nginx for clouds (a LoadBalancer service, served by MetalLB here). sha256: the
/// bytes of `deploy/static/provider/cloud/deploy.yaml` at tag controller-v1.12.0 (commit
/// 8ee43842) of kubernetes/ingress-nginx, 16203 bytes.
pub fn ingress_nginx() -> ArtifactPin {
    ArtifactPin::new(
        "ingress-nginx",
        "controller-v1.12.0",
        "be87a73c1e51bf34cd5266c4304c60d6999078f1381bd9e7d0e4c6dd261bdeff",
        "https://raw.githubusercontent.com/kubernetes/ingress-nginx/{version}/deploy/static/provider/cloud/deploy.yaml",
    )
}

/// cert-manager (Rancher's certificates). sha256: the v1.16.2 release asset
/// `cert-manager.yaml`, as four independent public pins of that URL agree (a Nix `fetchurl`
/// hash and three `sha256sum -c` install scripts).
pub fn cert_manager() -> ArtifactPin {
    ArtifactPin::new(
        "cert-manager",
        "v1.16.2",
        "1d51cdecd442f1f5f89783e9e0169b95d372724da203cc75dd7a5c4e50a10ce6",
        "https://github.com/cert-manager/cert-manager/releases/download/{version}/cert-manager.yaml",
    )
}

/// The kube-prometheus-stack chart: Prometheus, Alertmanager, Grafana, node-exporter.
/// sha256: the `digest` of kube-prometheus-stack 66.3.1 (created 2024-11-27) in the
/// prometheus-community chart repository's `index.yaml` (gh-pages of
/// prometheus-community/helm-charts), whose `urls` entry is this URL.
pub fn monitoring_chart() -> ArtifactPin {
    ArtifactPin::new(
        "kube-prometheus-stack",
        "66.3.1",
        "041319a39a131417bac0ce0ffe5d518c50d7f71e036c34b9bed7c57e82a493cb",
        "https://github.com/prometheus-community/helm-charts/releases/download/kube-prometheus-stack-{version}/kube-prometheus-stack-{version}.tgz",
    )
}

/// The Rancher chart. No sha256: the stable server-chart repository's index is not in any
/// public git repository and no public pin of this file was found (E030 until set).
pub fn rancher_chart() -> ArtifactPin {
    ArtifactPin::new(
        "rancher",
        "2.10.1",
        "",
        "https://releases.rancher.com/server-charts/stable/rancher-{version}.tgz",
    )
}

/// Helm, for charts on kubeadm clusters (K3s has its own helm controller). sha256: the
/// `helm-v3.16.3-linux-amd64.tar.gz.sha256sum` get.helm.sh publishes, as many independent
/// public pins copy it (OpenStack Kolla's sources, Homebrew-style formulae, Dockerfiles).
pub fn helm() -> ArtifactPin {
    ArtifactPin::new(
        "helm",
        "v3.16.3",
        "f5355c79190951eed23c5432a3b920e071f4c00a64f75e077de0dd4cb7b294ea",
        "https://get.helm.sh/helm-{version}-linux-amd64.tar.gz",
    )
}

/// Minor release stream of the upstream Kubernetes apt repository (kubeadm).
pub const KUBEADM_STREAM: &str = "v1.31";
/// The pinned kubelet/kubeadm/kubectl package version.
pub const KUBEADM_PACKAGE_VERSION: &str = "1.31.4-1.1";

/// The signing key of the upstream Kubernetes apt repository for [`KUBEADM_STREAM`]. No
/// sha256: upstream extends the key's expiry by re-signing it, which changes the bytes under
/// the same URL, so a pin would break on its own (E030 until set).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pin_but_the_rancher_chart_and_the_apt_key_has_a_sha256() {
        for p in all() {
            let unpinned = matches!(p.name.as_str(), "rancher" | "kubernetes-apt-key");
            assert_eq!(p.sha256.is_empty(), unpinned, "{}", p.name);
            if !unpinned {
                assert!(
                    p.sha256.len() == 64 && p.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}: {}",
                    p.name,
                    p.sha256
                );
            }
        }
    }
}
