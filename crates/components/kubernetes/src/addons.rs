//! The add-ons' own resources, which kbz renders (the upstream manifests and charts come
//! pinned through the download cache, see [`crate::pins`]): namespaces, Calico's
//! `Installation` with the pod CIDR, MetalLB's `IPAddressPool` + `L2Advertisement` from the
//! validated range, the Grafana admin secret, and the charts' values (as K3s `HelmChart`
//! resources, or helm values files on kubeadm).
//!
//! Manifests are built as structured data and printed as YAML, so no input can break their
//! syntax; [`check_custom_resource`] checks the custom resources against the fields the
//! pinned add-on versions document (offline schema validators know only core kinds).

use kbz_core::artifact::ArtifactPin;
use kbz_core::component::ComponentError;
use kbz_core::Context;
use serde_json::{json, Value};

use crate::pins;

/// Namespace of the monitoring stack.
pub const MONITORING_NS: &str = "monitoring";
/// Namespace of Rancher.
pub const RANCHER_NS: &str = "cattle-system";
/// Secret with Grafana's admin user and password.
pub const GRAFANA_SECRET: &str = "kbz-grafana-admin";
/// Secret names the add-ons read.
pub const GRAFANA_PASSWORD: &str = "kubernetes_grafana_password";
/// Rancher's first admin password.
pub const RANCHER_PASSWORD: &str = "kubernetes_rancher_password";
/// Where K3s serves charts from (`https://%{KUBERNETES_API}%/static/charts/`).
pub const K3S_CHARTS_DIR: &str = "/var/lib/rancher/k3s/server/static/charts";

/// Whether an add-on is enabled in `[kubernetes] addons`.
pub fn enabled(ctx: &Context, addon: &str) -> bool {
    ctx.config.kubernetes.addons.iter().any(|a| a == addon)
}

/// Rancher's host name.
pub fn rancher_hostname(ctx: &Context) -> String {
    ctx.config
        .kubernetes
        .rancher_hostname
        .clone()
        .unwrap_or_else(|| format!("rancher.{}.internal", ctx.config.cluster.slug()))
}

/// One manifest file kbz renders: its file name under the manifests directory and objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// File name (`metallb-pool.yaml`).
    pub file: &'static str,
    /// The add-on it belongs to.
    pub addon: &'static str,
    /// The objects, applied in order.
    pub objects: Vec<Value>,
    /// Holds a secret (written 0600).
    pub secret: bool,
}

impl Manifest {
    /// The file text: YAML documents separated by `---`.
    pub fn yaml(&self) -> Result<String, ComponentError> {
        let mut out = format!(
            "# {}: rendered by kbz for the {} add-on.\n",
            self.file, self.addon
        );
        for o in &self.objects {
            let y = serde_yaml_ng::to_string(o).map_err(|e| ComponentError::Render {
                template: self.file.into(),
                reason: e.to_string(),
            })?;
            out.push_str("---\n");
            out.push_str(&y);
        }
        Ok(out)
    }
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kbz"}}})
}

/// A K3s `HelmChart` (helm.cattle.io/v1) installing a chart K3s serves itself.
fn helm_chart(
    name: &str,
    chart_file: &str,
    version: &str,
    target_ns: &str,
    values: &Value,
) -> Result<Value, ComponentError> {
    let values = serde_yaml_ng::to_string(values).map_err(|e| ComponentError::Render {
        template: format!("helmchart {name}"),
        reason: e.to_string(),
    })?;
    Ok(json!({
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "chart": format!("https://%{{KUBERNETES_API}}%/static/charts/{chart_file}"),
            "version": version,
            "targetNamespace": target_ns,
            "createNamespace": true,
            "valuesContent": values,
        }
    }))
}

/// Values of the kube-prometheus-stack chart: Grafana's admin from kbz's secret,
/// node-exporter on every node.
pub fn monitoring_values() -> Value {
    json!({
        "grafana": {
            "admin": {"existingSecret": GRAFANA_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
        },
        "alertmanager": {"enabled": true},
        "prometheus-node-exporter": {"hostRootFsMount": {"enabled": true}},
        "nodeExporter": {"enabled": true},
    })
}

/// Values of the Rancher chart (the bootstrap password is a secret: the file is 0600).
pub fn rancher_values(ctx: &Context) -> Result<Value, ComponentError> {
    let masters = ctx
        .inventory
        .with_role(kbz_core::Role::K8sMaster)
        .len()
        .clamp(1, 3);
    Ok(json!({
        "hostname": rancher_hostname(ctx),
        "bootstrapPassword": ctx.secret(RANCHER_PASSWORD)?.expose(),
        "replicas": masters,
        "ingress": {"ingressClassName": "nginx", "tls": {"source": "rancher"}},
    }))
}

/// The chart file name of a pin (`rancher-2.10.1.tgz`).
pub fn chart_file(pin: &kbz_core::artifact::ArtifactPin) -> String {
    format!("{}-{}.tgz", pin.name, pin.version)
}

/// Every manifest kbz renders for this cluster, in apply order. `k3s` selects HelmChart
/// resources for the charts; kubeadm installs them with helm and the values files of
/// [`helm_values`].
pub fn manifests(ctx: &Context, k3s: bool) -> Result<Vec<Manifest>, ComponentError> {
    let k = &ctx.config.kubernetes;
    let mut out = Vec::new();
    if enabled(ctx, "calico") {
        out.push(Manifest {
            file: "calico-installation.yaml",
            addon: "calico",
            objects: vec![json!({
                "apiVersion": "operator.tigera.io/v1",
                "kind": "Installation",
                "metadata": {"name": "default"},
                "spec": {
                    "calicoNetwork": {
                        "ipPools": [{
                            "name": "default-ipv4-ippool",
                            "cidr": k.pod_cidr,
                            "encapsulation": "VXLANCrossSubnet",
                            "natOutgoing": "Enabled",
                            "nodeSelector": "all()",
                        }],
                    },
                },
            })],
            secret: false,
        });
    }
    if enabled(ctx, "metallb") {
        let range =
            match k.metallb_pool() {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Err(input(format!("[kubernetes] metallb_range: {e}"))),
                None => return Err(input(
                    "the metallb add-on needs [kubernetes] metallb_range (free addresses inside \
                     [cluster] subnet), or leave metallb out of [kubernetes] addons"
                        .into(),
                )),
            };
        out.push(Manifest {
            file: "metallb-pool.yaml",
            addon: "metallb",
            objects: vec![
                json!({
                    "apiVersion": "metallb.io/v1beta1",
                    "kind": "IPAddressPool",
                    "metadata": {"name": "kbz-pool", "namespace": "metallb-system"},
                    "spec": {"addresses": [range.to_string()], "autoAssign": true},
                }),
                json!({
                    "apiVersion": "metallb.io/v1beta1",
                    "kind": "L2Advertisement",
                    "metadata": {"name": "kbz-l2", "namespace": "metallb-system"},
                    "spec": {"ipAddressPools": ["kbz-pool"]},
                }),
            ],
            secret: false,
        });
    }
    if enabled(ctx, "monitoring") {
        let mut objects = vec![
            namespace(MONITORING_NS),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": GRAFANA_SECRET, "namespace": MONITORING_NS},
                "type": "Opaque",
                "stringData": {"admin-user": "admin", "admin-password": ctx.secret(GRAFANA_PASSWORD)?.expose()},
            }),
        ];
        if k3s {
            let pin = ctx.config.artifact(&pins::monitoring_chart());
            objects.push(helm_chart(
                "kube-prometheus-stack",
                &chart_file(&pin),
                &pin.version,
                MONITORING_NS,
                &monitoring_values(),
            )?);
        }
        out.push(Manifest {
            file: "monitoring.yaml",
            addon: "monitoring",
            objects,
            secret: true,
        });
    }
    if enabled(ctx, "rancher") {
        let mut objects = vec![namespace(RANCHER_NS)];
        if k3s {
            let pin = ctx.config.artifact(&pins::rancher_chart());
            objects.push(helm_chart(
                "rancher",
                &chart_file(&pin),
                &pin.version,
                RANCHER_NS,
                &rancher_values(ctx)?,
            )?);
        }
        out.push(Manifest {
            file: "rancher.yaml",
            addon: "rancher",
            objects,
            secret: k3s,
        });
    }
    for m in &out {
        for o in &m.objects {
            check_custom_resource(o).map_err(|e| ComponentError::Render {
                template: m.file.into(),
                reason: e,
            })?;
        }
    }
    Ok(out)
}

/// One helm release on kubeadm: values file name, release, namespace, chart pin, values.
pub type HelmValues = (&'static str, &'static str, &'static str, ArtifactPin, Value);

/// Helm values files for kubeadm clusters.
pub fn helm_values(ctx: &Context) -> Result<Vec<HelmValues>, ComponentError> {
    let mut out = Vec::new();
    if enabled(ctx, "monitoring") {
        out.push((
            "monitoring-values.yaml",
            "kube-prometheus-stack",
            MONITORING_NS,
            ctx.config.artifact(&pins::monitoring_chart()),
            monitoring_values(),
        ));
    }
    if enabled(ctx, "rancher") {
        out.push((
            "rancher-values.yaml",
            "rancher",
            RANCHER_NS,
            ctx.config.artifact(&pins::rancher_chart()),
            rancher_values(ctx)?,
        ));
    }
    Ok(out)
}

fn input(msg: String) -> ComponentError {
    ComponentError::Input(kbz_errors::Diagnostic::new(kbz_errors::Code::E008, msg))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// kbz's own check of a custom resource against the fields its pinned version documents:
/// MetalLB v0.14 `IPAddressPool` (spec.addresses: non-empty list of CIDRs or `a-b` ranges,
/// spec.autoAssign bool) and `L2Advertisement` (spec.ipAddressPools: names), Calico v3.29
/// `Installation` (spec.calicoNetwork.ipPools[].cidr/encapsulation/natOutgoing), K3s
/// `HelmChart` (spec.chart, spec.targetNamespace, spec.valuesContent). Core kinds pass (they
/// are checked by `kubernetes-validate`); unknown custom kinds are refused.
pub fn check_custom_resource(o: &Value) -> Result<(), String> {
    let api = str_at(o, &["apiVersion"]).ok_or("no apiVersion")?;
    let kind = str_at(o, &["kind"]).ok_or("no kind")?;
    let name =
        str_at(o, &["metadata", "name"]).ok_or_else(|| format!("{kind} without metadata.name"))?;
    let spec = o.get("spec");
    let allowed = |v: Option<&Value>, keys: &[&str]| -> Result<(), String> {
        if let Some(map) = v.and_then(Value::as_object) {
            for k in map.keys() {
                if !keys.contains(&k.as_str()) {
                    return Err(format!(
                        "{kind} {name}: unknown field `{k}` (known: {})",
                        keys.join(", ")
                    ));
                }
            }
        }
        Ok(())
    };
    match (api, kind) {
        ("v1", "Namespace" | "Secret") => Ok(()),
        ("metallb.io/v1beta1", "IPAddressPool") => {
            allowed(
                spec,
                &[
                    "addresses",
                    "autoAssign",
                    "avoidBuggyIPs",
                    "serviceAllocation",
                ],
            )?;
            let addrs = spec
                .and_then(|s| s.get("addresses"))
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    format!("IPAddressPool {name}: spec.addresses must be a non-empty list")
                })?;
            for a in addrs {
                let a = a
                    .as_str()
                    .ok_or("IPAddressPool addresses must be strings")?;
                kbz_core::config::AddrRange::parse(a)
                    .map_err(|e| format!("IPAddressPool {name}: {e}"))?;
            }
            if let Some(v) = spec.and_then(|s| s.get("autoAssign")) {
                v.as_bool()
                    .ok_or("IPAddressPool spec.autoAssign must be a boolean")?;
            }
            ns_is(o, "metallb-system")
        }
        ("metallb.io/v1beta1", "L2Advertisement") => {
            allowed(
                spec,
                &[
                    "ipAddressPools",
                    "ipAddressPoolSelectors",
                    "nodeSelectors",
                    "interfaces",
                ],
            )?;
            let pools = spec
                .and_then(|s| s.get("ipAddressPools"))
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    format!("L2Advertisement {name}: spec.ipAddressPools must name a pool")
                })?;
            if pools.iter().any(|p| p.as_str().is_none_or(str::is_empty)) {
                return Err(format!(
                    "L2Advertisement {name}: pool names must be strings"
                ));
            }
            ns_is(o, "metallb-system")
        }
        ("operator.tigera.io/v1", "Installation") => {
            if name != "default" {
                return Err(
                    "the Calico operator reads only the Installation named `default`".into(),
                );
            }
            allowed(spec, &["calicoNetwork", "registry", "variant", "cni"])?;
            let pools = spec
                .and_then(|s| s.get("calicoNetwork"))
                .and_then(|c| c.get("ipPools"))
                .and_then(Value::as_array)
                .ok_or("Installation: spec.calicoNetwork.ipPools missing")?;
            for p in pools {
                allowed(
                    Some(p),
                    &[
                        "name",
                        "cidr",
                        "encapsulation",
                        "natOutgoing",
                        "nodeSelector",
                        "blockSize",
                    ],
                )?;
                let cidr = str_at(p, &["cidr"]).ok_or("Installation ipPool without cidr")?;
                if !cidr.contains('/') || kbz_core::config::AddrRange::parse(cidr).is_err() {
                    return Err(format!(
                        "Installation ipPool cidr `{cidr}` is not a CIDR block"
                    ));
                }
                let enc = str_at(p, &["encapsulation"]).unwrap_or("IPIP");
                if ![
                    "IPIP",
                    "IPIPCrossSubnet",
                    "VXLAN",
                    "VXLANCrossSubnet",
                    "None",
                ]
                .contains(&enc)
                {
                    return Err(format!(
                        "Installation ipPool encapsulation `{enc}` is not one Calico knows"
                    ));
                }
                let nat = str_at(p, &["natOutgoing"]).unwrap_or("Enabled");
                if !["Enabled", "Disabled"].contains(&nat) {
                    return Err(format!(
                        "Installation ipPool natOutgoing `{nat}` must be Enabled or Disabled"
                    ));
                }
            }
            Ok(())
        }
        ("helm.cattle.io/v1", "HelmChart") => {
            allowed(
                spec,
                &[
                    "chart",
                    "version",
                    "targetNamespace",
                    "createNamespace",
                    "valuesContent",
                    "repo",
                    "set",
                    "bootstrap",
                    "helmVersion",
                    "jobImage",
                    "timeout",
                    "chartContent",
                ],
            )?;
            let chart = spec
                .and_then(|s| str_at(s, &["chart"]))
                .ok_or("HelmChart without spec.chart")?;
            if chart.is_empty() {
                return Err("HelmChart spec.chart is empty".into());
            }
            spec.and_then(|s| str_at(s, &["targetNamespace"]))
                .ok_or("HelmChart without spec.targetNamespace")?;
            if let Some(v) = spec.and_then(|s| str_at(s, &["valuesContent"])) {
                serde_yaml_ng::from_str::<serde_yaml_ng::Value>(v)
                    .map_err(|e| format!("HelmChart {name}: valuesContent is not YAML: {e}"))?;
            }
            Ok(())
        }
        (api, kind) => Err(format!("{api} {kind} is not a kind kbz knows how to check")),
    }
}

fn ns_is(o: &Value, ns: &str) -> Result<(), String> {
    match str_at(o, &["metadata", "namespace"]) {
        Some(n) if n == ns => Ok(()),
        other => Err(format!("expected namespace {ns}, found {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_resource_checks_catch_wrong_fields() {
        let pool = json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p", "namespace": "metallb-system"}, "spec": {"addresses": ["192.0.2.200-192.0.2.220"]}});
        assert_eq!(check_custom_resource(&pool), Ok(()));
        let mut bad = pool.clone();
        bad["spec"]["addresses"] = json!(["192.0.2.220-192.0.2.200"]);
        assert!(check_custom_resource(&bad).is_err());
        let mut typo = pool.clone();
        typo["spec"]["adresses"] = json!([]);
        assert!(check_custom_resource(&typo)
            .expect_err("typo")
            .contains("unknown field `adresses`"));
        let mut ns = pool;
        ns["metadata"]["namespace"] = json!("default");
        assert!(check_custom_resource(&ns).is_err());
        let inst = json!({"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"}, "spec": {"calicoNetwork": {"ipPools": [{"cidr": "10.42.0.0/16", "encapsulation": "VXLAN"}]}}});
        assert_eq!(check_custom_resource(&inst), Ok(()));
        let mut enc = inst;
        enc["spec"]["calicoNetwork"]["ipPools"][0]["encapsulation"] = json!("GRE");
        assert!(check_custom_resource(&enc).is_err());
        let unknown =
            json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}});
        assert!(check_custom_resource(&unknown).is_err());
    }
}
