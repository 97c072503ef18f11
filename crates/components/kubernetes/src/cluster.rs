//! Cluster steps of module 10: readiness of each rolled host, kubeadm init and joins, stale
//! nodes, the add-ons (apply only what differs, then wait on real rollout output), and the
//! final "every node Ready" check. Every wait polls a command; none sleeps a fixed time.

use kbz_core::component::{ClusterChange, ClusterChangeKind, ComponentError, HostExec};
use kbz_core::shell::quote;
use kbz_core::wait::until_ok;
use kbz_core::{Cmd, Context, Executor, Role};
use kbz_errors::Code;
use std::time::{Duration, Instant};

use crate::{addons, kubeadm, Flavor, Kubernetes, MANIFEST_DIR};

const POLL: Duration = Duration::from_secs(5);

/// The kubectl prefix on a master (root's admin credentials of the flavor).
pub fn kubectl(ctx: &Context) -> &'static str {
    Flavor::of(ctx).kubectl()
}

/// Applies `file` server-side only when `kubectl diff --server-side` reports a difference;
/// prints `kbz: unchanged FILE` otherwise, so a converged cluster only sees read-only calls.
pub fn apply_script(ctx: &Context, file: &str) -> String {
    let k = kubectl(ctx);
    let f = quote(file);
    format!(
        "if {k} diff --server-side --force-conflicts -f {f} >/dev/null 2>&1; then echo 'kbz: unchanged {file}'; else {k} apply --server-side --force-conflicts -f {f} 2>&1; fi"
    )
}

fn timeout(ctx: &Context) -> Duration {
    Duration::from_secs(ctx.config.timeouts.readiness)
}

fn cluster_err(code: Code, message: String, host: &str, hint: &str) -> ComponentError {
    ComponentError::Cluster {
        code,
        message,
        host: Some(host.into()),
        hint: Some(hint.into()),
    }
}

fn readyz(ctx: &Context) -> String {
    format!("{} get --raw=/readyz 2>&1", kubectl(ctx))
}

/// Waits until the API answers `/readyz` on this master (E061 on timeout).
async fn wait_api(ctx: &Context, hx: &HostExec) -> Result<(), ComponentError> {
    until_ok(hx.exec.as_ref(), &readyz(ctx), "the Kubernetes API (/readyz)", timeout(ctx), POLL)
        .await
        .map(|_| ())
        .map_err(|e| {
            cluster_err(
                Code::E061,
                format!("the Kubernetes API on {} is not ready: {e}", hx.host.hostname),
                &hx.host.hostname,
                "look at the control plane's log: `journalctl -u k3s -n 100` (K3s) or `crictl ps -a` and `journalctl -u kubelet -n 100` (kubeadm)",
            )
        })
}

/// After a rolled host was changed: K3s servers must serve `/readyz`, agents run their unit.
pub async fn host_ready(ctx: &Context, hx: &HostExec) -> Result<(), ComponentError> {
    if Flavor::of(ctx) != Flavor::K3s {
        return Ok(());
    }
    if hx.host.has(Role::K8sMaster) {
        wait_api(ctx, hx).await
    } else {
        until_ok(
            hx.exec.as_ref(),
            "systemctl is-active k3s-agent",
            "the K3s agent",
            timeout(ctx),
            POLL,
        )
        .await
        .map(|_| ())
    }
}

/// Runs a script and fails with `code` when it exits non-zero.
async fn must(
    exec: &dyn Executor,
    script: &str,
    code: Code,
    what: &str,
    hint: &str,
    secs: u64,
) -> Result<String, ComponentError> {
    let out = exec
        .run(&Cmd::new(script).timeout(Duration::from_secs(secs + 60)))
        .await?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    if out.success() {
        return Ok(text);
    }
    let tail: String = text
        .trim()
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(cluster_err(
        code,
        format!("{what} failed on {}: {tail}", exec.name()),
        exec.name(),
        hint,
    ))
}

/// What the cluster steps changed.
type Changes = Vec<ClusterChange>;

/// Cluster steps after every host is applied; returns what they changed (nothing on a
/// converged cluster).
pub async fn converge(ctx: &Context, hosts: &[HostExec]) -> Result<Changes, ComponentError> {
    let masters: Vec<&HostExec> = hosts
        .iter()
        .filter(|h| h.host.has(Role::K8sMaster))
        .collect();
    let Some(first) = masters.first().copied() else {
        return Ok(Vec::new());
    };
    let mut changes = Vec::new();
    if Flavor::of(ctx) == Flavor::Kubeadm {
        kubeadm_bootstrap(ctx, first, hosts, &mut changes).await?;
    }
    wait_api(ctx, first).await?;
    remove_stale_nodes(ctx, first, &mut changes).await?;
    install_addons(ctx, first, &mut changes).await?;
    wait_nodes_ready(ctx, first).await?;
    Ok(changes)
}

/// kubeadm: init on the first master (once), then each node without a kubelet.conf joins.
async fn kubeadm_bootstrap(
    ctx: &Context,
    first: &HostExec,
    hosts: &[HostExec],
    changes: &mut Changes,
) -> Result<(), ComponentError> {
    let secs = ctx.config.timeouts.readiness;
    let init_hint = "read kubeadm's output above; `journalctl -u kubelet -n 100` and `crictl ps -a` on the host; `kubeadm reset -f` before retrying a half-done init";
    let done = first
        .exec
        .run(&Cmd::new("[ -f /etc/kubernetes/admin.conf ]"))
        .await?
        .success();
    if !done {
        must(
            first.exec.as_ref(),
            &format!(
                "kubeadm init --config {} --upload-certs 2>&1",
                kubeadm::INIT_CONFIG
            ),
            Code::E065,
            "kubeadm init",
            init_hint,
            secs,
        )
        .await?;
        changes.push(ClusterChange::new(
            ClusterChangeKind::Bootstrap,
            &first.host.hostname,
            "kubeadm init: no /etc/kubernetes/admin.conf yet",
        ));
    }
    let mut joiners = Vec::new();
    for hx in hosts
        .iter()
        .filter(|h| h.host.hostname != first.host.hostname)
    {
        if !hx
            .exec
            .run(&Cmd::new("[ -f /etc/kubernetes/kubelet.conf ]"))
            .await?
            .success()
        {
            joiners.push(hx);
        }
    }
    if joiners.is_empty() {
        return Ok(());
    }
    // The uploaded certificates expire after two hours and the token after a day: upload
    // both again (from the 0600 config file, so neither is on a command line).
    let cfg = kubeadm::INIT_CONFIG;
    must(first.exec.as_ref(), &format!("kubeadm init phase upload-certs --upload-certs --config {cfg} >/dev/null 2>&1 && kubeadm init phase bootstrap-token --config {cfg} 2>&1"), Code::E065, "refreshing the join token and certificates", init_hint, secs).await?;
    let hash = must(
        first.exec.as_ref(),
        "openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl rsa -pubin -outform der 2>/dev/null | sha256sum | cut -d' ' -f1",
        Code::E065,
        "reading the cluster CA hash",
        init_hint,
        60,
    )
    .await?;
    let hash = hash.trim();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(cluster_err(
            Code::E065,
            format!(
                "the cluster CA hash on {} is not a sha256: `{hash}`",
                first.host.hostname
            ),
            &first.host.hostname,
            "check /etc/kubernetes/pki/ca.crt on the first master",
        ));
    }
    // Masters first (one at a time, as etcd grows one member at a time), then workers.
    joiners.sort_by_key(|h| !h.host.has(Role::K8sMaster));
    for hx in joiners {
        let text = kubeadm::join_config(ctx, &hx.host, &format!("sha256:{hash}"))?;
        hx.exec
            .put_file(kubeadm::JOIN_CONFIG, text.as_bytes(), 0o600, "root:root")
            .await?;
        must(
            hx.exec.as_ref(),
            &format!("kubeadm join --config {} 2>&1", kubeadm::JOIN_CONFIG),
            Code::E065,
            "kubeadm join",
            "the joiner must reach the API VIP on 6443 (`nc -vz VIP 6443`); `kubeadm reset -f` on it before retrying",
            secs,
        )
        .await?;
        changes.push(ClusterChange::new(
            ClusterChangeKind::Join,
            &hx.host.hostname,
            "kubeadm join: no /etc/kubernetes/kubelet.conf yet",
        ));
    }
    Ok(())
}

/// kubeadm's stacked etcd keeps the member of a master that is gone until someone removes
/// it (deleting its node does not; `kubeadm reset` would, on the old host, which a replaced
/// master no longer is): every member neither named after nor peering from an inventory
/// master is removed with `etcdctl member remove` inside the first master's etcd pod, before
/// its node is deleted. A member count that stayed would count against the quorum.
async fn remove_stale_etcd_members(
    ctx: &Context,
    first: &HostExec,
    changes: &mut Changes,
) -> Result<(), ComponentError> {
    let node = &first.host.hostname;
    let hint = "list them by hand: `kubectl -n kube-system exec etcd-NODE -- etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key member list`";
    let out = must(
        first.exec.as_ref(),
        &kubeadm::etcdctl(node, "member list"),
        Code::E065,
        "listing the etcd members",
        hint,
        60,
    )
    .await?;
    let masters = Kubernetes::masters(ctx);
    let members = kubeadm::parse_member_list(&out);
    if !members.iter().any(|m| &m.name == node) {
        // Not the member list it should be (or not of this cluster): remove nothing.
        return Err(cluster_err(
            Code::E065,
            format!(
                "the etcd member list on {node} does not list {node} itself: {}",
                out.trim()
            ),
            node,
            hint,
        ));
    }
    for m in members {
        let known = masters
            .iter()
            .any(|h| h.hostname == m.name || m.peer_hosts().iter().any(|p| *p == h.ip.to_string()));
        if known {
            continue;
        }
        must(
            first.exec.as_ref(),
            &kubeadm::etcdctl(node, &format!("member remove {}", m.id)),
            Code::E065,
            "removing the etcd member of a master the inventory no longer lists",
            hint,
            60,
        )
        .await?;
        let who = if m.name.is_empty() {
            m.peer_urls.join(",")
        } else {
            m.name.clone()
        };
        changes.push(ClusterChange::new(
            ClusterChangeKind::RemoveMember,
            node,
            format!(
                "removed etcd member {} ({who}): not an inventory master",
                m.id
            ),
        ));
    }
    Ok(())
}

/// Nodes the cluster knows but the inventory no longer lists (a replaced master or worker)
/// are deleted (never forced). On K3s the delete also removes a server's embedded etcd
/// member: K3s's etcd member controller holds a finalizer on server nodes and removes the
/// member before the node goes (a forced delete would skip it); on kubeadm the stale etcd
/// members are removed first ([`remove_stale_etcd_members`]).
async fn remove_stale_nodes(
    ctx: &Context,
    first: &HostExec,
    changes: &mut Changes,
) -> Result<(), ComponentError> {
    if Flavor::of(ctx) == Flavor::Kubeadm {
        remove_stale_etcd_members(ctx, first, changes).await?;
    }
    let k = kubectl(ctx);
    let out = must(
        first.exec.as_ref(),
        &format!("{k} get nodes -o name 2>&1"),
        Code::E061,
        "listing nodes",
        "check the API: `kubectl get nodes`",
        60,
    )
    .await?;
    let known: Vec<&str> = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| h.has(Role::K8sMaster) || h.has(Role::K8sWorker))
        .map(|h| h.hostname.as_str())
        .collect();
    for line in out.lines() {
        let Some(node) = line.trim().strip_prefix("node/") else {
            continue;
        };
        if !known.contains(&node) {
            must(
                first.exec.as_ref(),
                &format!("{k} delete node {} 2>&1", quote(node)),
                Code::E061,
                "deleting a node the inventory no longer lists",
                "delete it by hand: `kubectl delete node NAME`",
                60,
            )
            .await?;
            changes.push(ClusterChange::new(
                ClusterChangeKind::RemoveMember,
                &first.host.hostname,
                format!("deleted node {node}: not in the inventory"),
            ));
        }
    }
    Ok(())
}

/// Polls a rollout until it completes (the object may not exist yet: a chart creates it).
async fn rollout(
    ctx: &Context,
    first: &HostExec,
    ns: &str,
    deployment: &str,
    addon: &str,
) -> Result<(), ComponentError> {
    let script = format!(
        "{} -n {ns} rollout status deployment/{deployment} --timeout=30s 2>&1",
        kubectl(ctx)
    );
    until_ok(first.exec.as_ref(), &script, &format!("{addon}: deployment {ns}/{deployment}"), timeout(ctx), POLL)
        .await
        .map(|_| ())
        .map_err(|e| {
            cluster_err(
                Code::E064,
                format!("the {addon} add-on did not roll out: {e}"),
                &first.host.hostname,
                &format!("see why: `kubectl -n {ns} describe deployment {deployment}` and `kubectl -n {ns} get pods`; images must be pullable (registry_mirror)"),
            )
        })
}

/// Applies a manifest; an admission webhook that does not answer yet is retried until the
/// readiness timeout, then is E063.
async fn apply(
    ctx: &Context,
    first: &HostExec,
    file: &str,
    addon: &str,
    changes: &mut Changes,
) -> Result<(), ComponentError> {
    let deadline = Instant::now() + timeout(ctx);
    loop {
        let out = first
            .exec
            .run(&Cmd::new(apply_script(ctx, file)).timeout(Duration::from_secs(120)))
            .await?;
        let text = format!("{}{}", out.stdout_str(), out.stderr_str());
        if out.success() {
            if !text.contains("kbz: unchanged") {
                changes.push(ClusterChange::new(
                    ClusterChangeKind::Apply,
                    &first.host.hostname,
                    format!("{addon}: applied {file} (kubectl diff showed a difference)"),
                ));
            }
            return Ok(());
        }
        let webhook = text.contains("failed calling webhook")
            || text.contains("webhook") && text.contains("context deadline exceeded");
        if webhook && Instant::now() + POLL < deadline {
            tokio::time::sleep(POLL).await;
            continue;
        }
        let tail: String = text.trim().chars().take(400).collect();
        return Err(if webhook {
            cluster_err(
                Code::E063,
                format!("applying {file} ({addon}) failed: an admission webhook did not answer within {}s: {tail}", ctx.config.timeouts.readiness),
                &first.host.hostname,
                "the webhook's pods must be Ready and reachable from the API server: `kubectl -n metallb-system get pods,endpoints`; with Calico, the pod network must be up first (`kubectl get nodes`)",
            )
        } else {
            cluster_err(
                Code::E064,
                format!("applying {file} ({addon}) failed: {tail}"),
                &first.host.hostname,
                "run the apply by hand to see the full error: `kubectl apply --server-side -f FILE`",
            )
        });
    }
}

/// A chart through helm (kubeadm), skipped when the last release carries these values.
async fn helm_release(
    ctx: &Context,
    first: &HostExec,
    release: &str,
    ns: &str,
    chart: &str,
    values: &str,
    changes: &mut Changes,
) -> Result<(), ComponentError> {
    let kc = "--kubeconfig /etc/kubernetes/admin.conf";
    // The release description carries a hash of the chart and its values file's content, so
    // a re-run with the same inputs is a read-only `helm history`.
    let content = addons::helm_values(ctx)?
        .into_iter()
        .find(|(f, ..)| *f == values)
        .map(|(.., v)| v.to_string())
        .unwrap_or_default();
    let stamp = format!(
        "kbz-{}",
        &kbz_core::shell::sha256_hex(format!("{chart}\n{content}").as_bytes())[..12]
    );
    let script = format!(
        "if helm {kc} -n {ns} history {release} --max 1 -o json 2>/dev/null | grep -q '\"description\":\"{stamp}\"'; then echo 'kbz: unchanged {release}'; else helm {kc} upgrade --install {release} {chart} -n {ns} --create-namespace -f {MANIFEST_DIR}/{values} --description {stamp} --wait --timeout {}s 2>&1; fi",
        ctx.config.timeouts.readiness
    );
    let out = must(
        first.exec.as_ref(),
        &script,
        Code::E064,
        &format!("helm release {release}"),
        &format!("`helm -n {ns} status {release}` and `kubectl -n {ns} get pods`"),
        ctx.config.timeouts.readiness,
    )
    .await?;
    if !out.contains("kbz: unchanged") {
        changes.push(ClusterChange::new(
            ClusterChangeKind::Apply,
            &first.host.hostname,
            format!("helm upgrade --install {release} ({chart})"),
        ));
    }
    Ok(())
}

async fn install_addons(
    ctx: &Context,
    first: &HostExec,
    changes: &mut Changes,
) -> Result<(), ComponentError> {
    let k = kubectl(ctx);
    let secs = ctx.config.timeouts.readiness;
    let upstream = Kubernetes::upstream_manifests(ctx);
    let file_of = |addon: &str| {
        upstream
            .iter()
            .find(|(a, ..)| *a == addon)
            .map(|(_, _, p)| p.clone())
    };
    let k3s = Flavor::of(ctx) == Flavor::K3s;
    if let Some(f) = file_of("calico") {
        apply(ctx, first, &f, "calico", changes).await?;
        rollout(ctx, first, "tigera-operator", "tigera-operator", "calico").await?;
        must(first.exec.as_ref(), &format!("{k} wait --for=condition=Established crd/installations.operator.tigera.io --timeout={secs}s 2>&1"), Code::E064, "waiting for Calico's CRDs", "`kubectl get crd | grep tigera`", secs).await?;
        apply(
            ctx,
            first,
            &format!("{MANIFEST_DIR}/calico-installation.yaml"),
            "calico",
            changes,
        )
        .await?;
    }
    if let Some(f) = file_of("metallb") {
        apply(ctx, first, &f, "metallb", changes).await?;
        rollout(ctx, first, "metallb-system", "controller", "metallb").await?;
        apply(
            ctx,
            first,
            &format!("{MANIFEST_DIR}/metallb-pool.yaml"),
            "metallb",
            changes,
        )
        .await?;
    }
    if let Some(f) = file_of("ingress-nginx") {
        apply(ctx, first, &f, "ingress-nginx", changes).await?;
        rollout(
            ctx,
            first,
            "ingress-nginx",
            "ingress-nginx-controller",
            "ingress-nginx",
        )
        .await?;
    }
    let charts = Kubernetes::charts(ctx);
    let chart_of = |name: &str| {
        charts
            .iter()
            .find(|(p, _)| p.name == name)
            .map(|(_, path)| path.clone())
    };
    if addons::enabled(ctx, "monitoring") {
        apply(
            ctx,
            first,
            &format!("{MANIFEST_DIR}/monitoring.yaml"),
            "monitoring",
            changes,
        )
        .await?;
        if !k3s {
            if let Some(c) = chart_of("kube-prometheus-stack") {
                helm_release(
                    ctx,
                    first,
                    "kube-prometheus-stack",
                    addons::MONITORING_NS,
                    &c,
                    "monitoring-values.yaml",
                    changes,
                )
                .await?;
            }
        }
        rollout(
            ctx,
            first,
            addons::MONITORING_NS,
            "kube-prometheus-stack-grafana",
            "monitoring",
        )
        .await?;
    }
    if addons::enabled(ctx, "rancher") {
        if let Some(f) = file_of("rancher") {
            apply(ctx, first, &f, "cert-manager", changes).await?;
            rollout(
                ctx,
                first,
                "cert-manager",
                "cert-manager-webhook",
                "cert-manager",
            )
            .await?;
        }
        apply(
            ctx,
            first,
            &format!("{MANIFEST_DIR}/rancher.yaml"),
            "rancher",
            changes,
        )
        .await?;
        if !k3s {
            if let Some(c) = chart_of("rancher") {
                helm_release(
                    ctx,
                    first,
                    "rancher",
                    addons::RANCHER_NS,
                    &c,
                    "rancher-values.yaml",
                    changes,
                )
                .await?;
            }
        }
        rollout(ctx, first, addons::RANCHER_NS, "rancher", "rancher").await?;
    }
    Ok(())
}

/// Every inventory node is registered and Ready (E062 names the others).
async fn wait_nodes_ready(ctx: &Context, first: &HostExec) -> Result<(), ComponentError> {
    let k = kubectl(ctx);
    let secs = ctx.config.timeouts.readiness;
    let expected: Vec<String> = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| h.has(Role::K8sMaster) || h.has(Role::K8sWorker))
        .map(|h| h.hostname.clone())
        .collect();
    let script = format!("{k} get nodes --no-headers 2>&1");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = first.exec.run(&Cmd::new(&script)).await?;
        let nodes = crate::health::parse_nodes(&out.stdout_str());
        let missing: Vec<String> = expected
            .iter()
            .filter(|e| !nodes.iter().any(|n| &n.name == *e && n.ready))
            .map(|e| match nodes.iter().find(|n| &n.name == e) {
                Some(n) => format!("{e} ({})", n.status),
                None => format!("{e} (not registered)"),
            })
            .collect();
        if out.success() && missing.is_empty() {
            return Ok(());
        }
        if Instant::now() + POLL > deadline {
            return Err(cluster_err(
                Code::E062,
                format!("nodes not Ready after {secs}s: {}", missing.join(", ")),
                &first.host.hostname,
                "on each node named: `journalctl -u k3s-agent -n 100` (or k3s, kubelet); a node stays NotReady until the pod network (Calico) runs: `kubectl -n calico-system get pods -o wide`",
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
