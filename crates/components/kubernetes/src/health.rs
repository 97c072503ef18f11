//! Read-only health checks of module 10 and the parsers of `kubectl` output they use
//! (tested on captured output): nodes Ready, kube-system pods, the API through the VIP and,
//! on K3s, the embedded etcd members.

use kbz_core::health::{HealthCheck, HealthRaw, HealthStatus, Probe, CLUSTER};
use kbz_core::{Context, Host, Role};
use kbz_errors::Code;

use crate::{cluster::kubectl, Flavor, Kubernetes};

/// One line of `kubectl get nodes --no-headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// `Ready`, `NotReady`, `Ready,SchedulingDisabled`.
    pub status: String,
    /// Ready (scheduling may be disabled).
    pub ready: bool,
    /// Roles column (`control-plane,etcd,master`).
    pub roles: String,
}

/// Parses `kubectl get nodes --no-headers` (NAME STATUS ROLES AGE VERSION).
pub fn parse_nodes(out: &str) -> Vec<Node> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let status = w.next()?.to_string();
            let roles = w.next().unwrap_or("<none>").to_string();
            let ready = status.split(',').any(|s| s == "Ready");
            Some(Node {
                name,
                status,
                ready,
                roles,
            })
        })
        .collect()
}

/// Pods of `kubectl get pods --no-headers` whose STATUS is not Running or Completed, or whose
/// READY column is short: `(name, status)`.
pub fn unhealthy_pods(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (name, ready, status) = (w.first()?, w.get(1)?, w.get(2)?);
            let full = ready.split_once('/').is_some_and(|(a, b)| a == b);
            match *status {
                "Completed" | "Succeeded" => None,
                "Running" if full => None,
                _ => Some((name.to_string(), format!("{status} {ready}"))),
            }
        })
        .collect()
}

const C: &str = "kubernetes";

/// The probes of one host: on masters the node list, kube-system's pods and the API through
/// the VIP (each bounded by `timeout`); on workers their node agent's unit.
pub fn probes(ctx: &Context, host: &Host) -> Vec<Probe> {
    if !host.has(Role::K8sMaster) {
        let unit = match Flavor::of(ctx) {
            Flavor::K3s => "k3s-agent",
            Flavor::Kubeadm => "kubelet",
        };
        return vec![Probe::new("unit", format!("systemctl is-active {unit}"))];
    }
    let k = kubectl(ctx);
    let mut p = vec![
        Probe::new("nodes", format!("timeout 15 {k} get nodes --no-headers")),
        Probe::new(
            "pods",
            format!("timeout 15 {k} -n kube-system get pods --no-headers"),
        ),
    ];
    if let Some(vip) = ctx.config.vips.get("k8s_api") {
        // With the admin credentials, verified against the cluster CA: K3s turns anonymous
        // access off, so an unauthenticated `/readyz` would only ever say 401.
        let url = format!(
            "https://{}",
            kbz_core::net::host_port(*vip, crate::API_PORT)
        );
        p.push(Probe::new(
            "vip",
            format!("timeout 10 {k} --server={url} --request-timeout=5s get --raw=/readyz"),
        ));
    }
    p
}

/// Judges every host's answers: each node Ready (degraded otherwise), the API answering on
/// some master and through the VIP (down otherwise), kube-system's pods (degraded), and on
/// K3s the embedded etcd members (down without a majority, degraded below all).
pub fn checks(ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    let masters = Kubernetes::masters(ctx);
    let answer = masters.iter().find_map(|m| {
        raw.get(&m.hostname, "nodes")
            .ok()
            .filter(|o| o.success())
            .map(|o| (m.hostname.clone(), o))
    });
    let Some((on, nodes_out)) = answer else {
        out.push(HealthCheck::failing(
            HealthStatus::Down,
            C,
            CLUSTER,
            "API",
            "no master's API answered `kubectl get nodes`",
            Code::E061,
            "on a master: `journalctl -u k3s -n 100` (K3s) or `journalctl -u kubelet -n 100` (kubeadm)",
        ));
        return out;
    };
    out.push(HealthCheck::ok(C, &on, "API", "kubectl get nodes answered"));
    let nodes = parse_nodes(&nodes_out.text);
    for h in raw.hosts() {
        let n = nodes.iter().find(|n| n.name == h.hostname);
        out.push(HealthCheck::verdict(
            n.is_some_and(|n| n.ready),
            HealthStatus::Degraded,
            C,
            &h.hostname,
            "node Ready",
            match n {
                Some(n) => format!("{} ({})", n.status, n.roles),
                None => "not registered in the cluster".into(),
            },
            Code::E062,
            format!("`kubectl describe node {}`", h.hostname),
        ));
    }
    if Flavor::of(ctx) == Flavor::K3s {
        let etcd = nodes
            .iter()
            .filter(|n| n.ready && n.roles.split(',').any(|r| r == "etcd"))
            .count();
        let want = masters.len();
        let status = if etcd * 2 > want {
            HealthStatus::Degraded
        } else {
            HealthStatus::Down
        };
        out.push(HealthCheck::verdict(
            etcd == want,
            status,
            C,
            CLUSTER,
            "etcd members",
            format!("{etcd} of {want} servers are Ready etcd members"),
            Code::E036,
            "on the servers named above: `journalctl -u k3s -n 100`",
        ));
    }
    if let Ok(o) = raw.get(&on, "pods") {
        let bad = unhealthy_pods(&o.text);
        out.push(HealthCheck::verdict(
            o.success() && bad.is_empty(),
            HealthStatus::Degraded,
            C,
            CLUSTER,
            "kube-system pods",
            if bad.is_empty() {
                "every pod Running or Completed".to_string()
            } else {
                bad.iter()
                    .map(|(n, s)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            Code::E064,
            "`kubectl -n kube-system get pods` and `kubectl -n kube-system describe pod NAME`",
        ));
    }
    if let Ok(o) = raw.get(&on, "vip") {
        out.push(HealthCheck::verdict(
            o.success() && o.text.trim() == "ok",
            HealthStatus::Down,
            C,
            CLUSTER,
            "API through the VIP",
            format!("/readyz: {}", o.text.trim()),
            Code::E061,
            "check the VIP front on the lb hosts: `nc -vz VIP 6443` and HAProxy's stats",
        ));
    }
    for h in raw.hosts().filter(|h| !h.has(Role::K8sMaster)) {
        if let Ok(o) = raw.get(&h.hostname, "unit") {
            out.push(HealthCheck::verdict(
                o.success(),
                HealthStatus::Degraded,
                C,
                &h.hostname,
                "node agent",
                o.text.trim().to_string(),
                Code::E062,
                "`systemctl status k3s-agent` (or kubelet) on the host",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vip_is_asked_with_the_admin_credentials_not_anonymously() {
        let ctx = kbz_testkit::example_context(Vec::<String>::new());
        let vip = ctx.config.vips["k8s_api"];
        for (flavor, k) in [
            ("k3s", "k3s kubectl"),
            ("kubeadm", "kubectl --kubeconfig=/etc/kubernetes/admin.conf"),
        ] {
            let mut c = ctx.clone();
            let mut cfg = (*c.config).clone();
            cfg.kubernetes.flavor = flavor.into();
            c.config = std::sync::Arc::new(cfg);
            let m = Kubernetes::masters(&c)[0].clone();
            let p = probes(&c, &m);
            let v = p.iter().find(|p| p.name == "vip").expect("vip probe");
            assert_eq!(
                v.script,
                format!("timeout 10 {k} --server=https://{vip}:6443 --request-timeout=5s get --raw=/readyz")
            );
            assert!(!v.script.contains("curl"), "{}", v.script);
        }
    }

    #[test]
    fn nodes_and_pods_from_captured_output() {
        let nodes = "k8s-m1   Ready                      control-plane,etcd,master   10d   v1.34.2+k3s1\nk8s-w1   NotReady                   <none>                      10d   v1.34.2+k3s1\nk8s-m2   Ready,SchedulingDisabled   control-plane,etcd,master   9d    v1.34.2+k3s1\n";
        let n = parse_nodes(nodes);
        assert_eq!(n.len(), 3);
        assert!(n[0].ready && !n[1].ready && n[2].ready);
        assert_eq!(n[0].roles, "control-plane,etcd,master");
        let pods = "coredns-7b98449c4-x   1/1   Running   0   10d\nmetrics-server-1   0/1   Running   3   10d\nhelm-install-traefik-abc   0/1   Completed   0   10d\nlocal-path-1   0/1   CrashLoopBackOff   12   1d\n";
        assert_eq!(
            unhealthy_pods(pods),
            vec![
                ("metrics-server-1".to_string(), "Running 0/1".to_string()),
                (
                    "local-path-1".to_string(),
                    "CrashLoopBackOff 0/1".to_string()
                )
            ]
        );
    }
}
