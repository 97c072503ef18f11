//! Read-only health checks of module 10 and the parsers of `kubectl` output they use
//! (tested on captured output): nodes Ready, kube-system pods, the API through the VIP and,
//! on K3s, the embedded etcd members.

use kbz_core::component::{HealthCheck, HostExec};
use kbz_core::{Cmd, Context, Role};

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

fn check(host: &str, what: &str, ok: bool, detail: String) -> HealthCheck {
    HealthCheck {
        host: host.into(),
        check: what.into(),
        ok,
        detail,
    }
}

/// The checks of `kbz-health`.
pub async fn checks(ctx: &Context, hosts: &[HostExec]) -> Vec<HealthCheck> {
    let Some(first) = hosts.iter().find(|h| h.host.has(Role::K8sMaster)) else {
        return Vec::new();
    };
    let on = first.host.hostname.clone();
    let k = kubectl(ctx);
    let run = |script: String| {
        let exec = first.exec.clone();
        async move { exec.run(&Cmd::new(script)).await }
    };
    let mut out = Vec::new();
    match run(format!("{k} get nodes --no-headers 2>&1")).await {
        Ok(o) if o.success() => {
            let nodes = parse_nodes(&o.stdout_str());
            for h in ctx
                .inventory
                .hosts
                .iter()
                .filter(|h| h.has(Role::K8sMaster) || h.has(Role::K8sWorker))
            {
                let n = nodes.iter().find(|n| n.name == h.hostname);
                out.push(check(
                    &h.hostname,
                    "kubernetes node Ready",
                    n.is_some_and(|n| n.ready),
                    match n {
                        Some(n) if n.ready => format!("{} ({})", n.status, n.roles),
                        Some(n) => format!("E062 {}", n.status),
                        None => "E062 not registered in the cluster".into(),
                    },
                ));
            }
            if Flavor::of(ctx) == Flavor::K3s {
                let etcd = nodes
                    .iter()
                    .filter(|n| n.roles.split(',').any(|r| r == "etcd"))
                    .count();
                let want = Kubernetes::masters(ctx).len();
                out.push(check(
                    &on,
                    "k3s etcd members",
                    etcd == want,
                    format!("{etcd} of {want} servers are etcd members"),
                ));
            }
        }
        Ok(o) => out.push(check(
            &on,
            "kubernetes API",
            false,
            format!("E061 {}", o.stdout_str().trim()),
        )),
        Err(e) => out.push(check(&on, "kubernetes API", false, format!("E061 {e}"))),
    }
    if let Ok(o) = run(format!("{k} -n kube-system get pods --no-headers 2>&1")).await {
        let bad = unhealthy_pods(&o.stdout_str());
        out.push(check(
            &on,
            "kube-system pods",
            o.success() && bad.is_empty(),
            if bad.is_empty() {
                "every pod Running or Completed".into()
            } else {
                bad.iter()
                    .map(|(n, s)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ));
    }
    if let Some(vip) = ctx.config.vips.get("k8s_api") {
        let url = format!(
            "https://{}/readyz",
            kbz_core::net::host_port(*vip, crate::API_PORT)
        );
        if let Ok(o) = run(format!("curl -ksS --max-time 5 {url} 2>&1")).await {
            let ok = o.success() && o.stdout_str().trim() == "ok";
            out.push(check(
                &on,
                "kubernetes API through the VIP",
                ok,
                format!("{url}: {}", o.stdout_str().trim()),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
