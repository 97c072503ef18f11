//! Engine runs of module 10 on fake Debian hosts with every pinned artifact served from
//! `file://` sources through a real download cache: a K3s install rolls the hosts (each
//! waited for on scripted `/readyz` and unit output), applies the add-ons and waits on
//! scripted rollout output; a converged re-run changes nothing; a new agent joins alone; a
//! replaced master's stale node is deleted (K3s: its embedded etcd member goes with it;
//! kubeadm: its stacked etcd member is removed first); uninstall removes kbz's files; kubeadm
//! inits once.

use kbz_core::artifact::ArtifactOverride;
use kbz_core::engine::Mode;
use kbz_core::{Component, Config, Context, Engine, Host, Inventory, Role, RunOptions, Secrets};
use kbz_errors::{Code, HasCode};
use kbz_exec::DownloadCache;
use kbz_kubernetes::{pins, Kubernetes};
use kbz_testkit::output;
use kbz_testkit::FakeConnector;
use std::sync::Arc;

fn host(name: &str, ip: &str, role: Role) -> Host {
    Host::new(name, ip.parse().expect("ip"), &[role])
}

fn inventory(masters: &[(&str, &str)], workers: &[(&str, &str)]) -> Inventory {
    Inventory {
        path: "servers.tsv".into(),
        hosts: masters
            .iter()
            .map(|(n, ip)| host(n, ip, Role::K8sMaster))
            .chain(workers.iter().map(|(n, ip)| host(n, ip, Role::K8sWorker)))
            .collect(),
    }
}

const MASTERS: &[(&str, &str)] = &[
    ("k8s-m1", "192.0.2.41"),
    ("k8s-m2", "192.0.2.42"),
    ("k8s-m3", "192.0.2.43"),
];
const WORKERS: &[(&str, &str)] = &[("k8s-w1", "192.0.2.51"), ("k8s-w2", "192.0.2.52")];

struct Lab {
    fleet: Arc<FakeConnector>,
    config: Config,
    cache: Arc<DownloadCache>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// A config whose every pin is a local file with its real sha256.
fn lab(flavor: &str, all_hosts: &Inventory) -> Lab {
    let src = tempfile::tempdir().expect("src");
    let cache_dir = tempfile::tempdir().expect("cache");
    let mut config = kbz_testkit::example_config();
    config.kubernetes.flavor = flavor.into();
    config.timeouts.readiness = 1;
    for p in pins::all() {
        let body = format!("{} {} bytes", p.name, p.version);
        let file = src.path().join(format!("{}-{}", p.name, p.version));
        std::fs::write(&file, &body).expect("write");
        config.artifacts.insert(
            p.name.clone(),
            ArtifactOverride {
                version: p.version.clone(),
                sha256: kbz_core::shell::sha256_hex(body.as_bytes()),
                source: Some(format!("file://{}", file.display())),
            },
        );
    }
    Lab {
        fleet: Arc::new(FakeConnector::debian_fleet(&all_hosts.hosts)),
        config,
        cache: Arc::new(DownloadCache::new(cache_dir.path()).expect("cache")),
        _dirs: (src, cache_dir),
    }
}

fn nodes_table(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            let roles = if n.contains("-m") {
                "control-plane,etcd,master"
            } else {
                "<none>"
            };
            format!("{n}   Ready   {roles}   1d   v1.34.2+k3s1\n")
        })
        .collect()
}

/// Scripts what a healthy cluster answers; `registered` is what `get nodes -o name` lists.
fn script_cluster(fleet: &FakeConnector, registered: &[&str], ready: &[&str], unchanged: bool) {
    for (_, h) in fleet.hosts() {
        h.script("get --raw=/readyz", output("ok", 0));
        h.script("systemctl is-active k3s-agent", output("active\n", 0));
        h.script(
            "get nodes -o name",
            output(
                &registered
                    .iter()
                    .map(|n| format!("node/{n}\n"))
                    .collect::<String>(),
                0,
            ),
        );
        h.script("get nodes --no-headers", output(&nodes_table(ready), 0));
        h.script("delete node", output("node deleted\n", 0));
        // kubeadm's stacked etcd: one member per registered master.
        let members: String = registered
            .iter()
            .filter(|n| n.contains("-m"))
            .enumerate()
            .map(|(i, n)| format!("{:016x}, started, {n}, https://192.0.2.{}:2380, https://192.0.2.{}:2379, false\n", 0xa0 + i, 41 + i, 41 + i))
            .collect();
        h.script("member list", output(&members, 0));
        let apply = if unchanged {
            "kbz: unchanged\n"
        } else {
            "serverside-applied\n"
        };
        h.script("diff --server-side", output(apply, 0));
        h.script(
            "rollout status",
            output("deployment successfully rolled out\n", 0),
        );
        h.script(
            "wait --for=condition=Established",
            output("condition met\n", 0),
        );
        h.script("[ -f /etc/kubernetes/admin.conf ]", output("", 0));
        h.script("[ -f /etc/kubernetes/kubelet.conf ]", output("", 0));
    }
}

fn engine(lab: &Lab, inv: Inventory) -> Engine {
    let ctx = Context::new(
        inv,
        lab.config.clone(),
        Secrets::placeholders(Kubernetes.secret_names()),
    );
    Engine::new(ctx, vec![Arc::new(Kubernetes)], lab.fleet.clone())
        .with_artifacts(lab.cache.clone())
}

fn names(hosts: &[(&'static str, &str)]) -> Vec<&'static str> {
    hosts.iter().map(|(n, _)| *n).collect()
}

#[tokio::test]
async fn k3s_installs_reruns_clean_adds_an_agent_replaces_a_master_and_uninstalls() {
    let w3 = ("k8s-w3", "192.0.2.53");
    let m4 = ("k8s-m4", "192.0.2.44");
    let all: Vec<_> = MASTERS
        .iter()
        .chain(WORKERS)
        .chain([&w3, &m4])
        .copied()
        .collect();
    let lab = lab("k3s", &inventory(&all, &[]));
    let base: Vec<&str> = names(MASTERS).into_iter().chain(names(WORKERS)).collect();
    script_cluster(&lab.fleet, &base, &base, false);

    let e = engine(&lab, inventory(MASTERS, WORKERS));
    let first = e.run(&RunOptions::default()).await.expect("install");
    assert!(first.changed() > 0);
    assert!(
        first
            .cluster_changes
            .iter()
            .any(|c| c.detail.contains("metallb-pool.yaml")),
        "{:?}",
        first.cluster_changes
    );
    for (name, _) in MASTERS.iter().chain(WORKERS) {
        let h = lab.fleet.host(name).expect("host");
        let s = h.state();
        let svc = if name.contains("-m") {
            "k3s"
        } else {
            "k3s-agent"
        };
        assert!(
            s.services[svc].active && s.services[svc].enabled,
            "{name}: {svc} not running"
        );
        assert_eq!(
            s.files["/usr/local/bin/k3s"].content, b"k3s v1.34.2+k3s1 bytes",
            "{name}"
        );
        assert_eq!(s.files["/etc/rancher/k3s/kbz-token"].mode, 0o600);
        assert!(s
            .files
            .contains_key("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst"));
        if name.contains("-m") {
            assert!(
                s.files.contains_key("/etc/kbz/k8s/metallb-pool.yaml"),
                "{name}"
            );
            assert!(s
                .files
                .contains_key("/var/lib/rancher/k3s/server/static/charts/rancher-2.10.1.tgz"));
        }
    }
    // Servers were each waited for, and the add-ons applied and rolled out on the first.
    let m1 = lab.fleet.host("k8s-m1").expect("m1");
    let ran = m1.ran();
    for needle in [
        "get --raw=/readyz",
        "upstream/metallb-v0.14.9.yaml",
        "metallb-pool.yaml",
        "rollout status deployment/controller",
        "rollout status deployment/rancher",
        "get nodes --no-headers",
    ] {
        assert!(
            ran.iter().any(|s| s.contains(needle)),
            "m1 never ran `{needle}`"
        );
    }
    assert!(lab
        .fleet
        .host("k8s-w1")
        .expect("w1")
        .ran()
        .iter()
        .any(|s| s.contains("systemctl is-active k3s-agent")));

    // A converged re-run: no host change, and only read-only calls to the cluster.
    script_cluster(&lab.fleet, &base, &base, true);
    let applied: Vec<usize> = lab.fleet.hosts().map(|(_, h)| h.applied().len()).collect();
    let again = e.run(&RunOptions::default()).await.expect("re-run");
    assert_eq!(again.changed(), 0, "{}", again.plan.render());
    assert!(
        again.cluster_changes.is_empty(),
        "{:?}",
        again.cluster_changes
    );
    assert_eq!(
        applied,
        lab.fleet
            .hosts()
            .map(|(_, h)| h.applied().len())
            .collect::<Vec<_>>()
    );
    assert!(!m1.ran().iter().any(|s| s.contains("delete node")));

    // A new agent: only it changes; it registers through the VIP.
    let workers3: Vec<_> = WORKERS.iter().copied().chain([w3]).collect();
    let with_w3: Vec<&str> = base.iter().copied().chain(["k8s-w3"]).collect();
    script_cluster(&lab.fleet, &with_w3, &with_w3, true);
    let e3 = engine(&lab, inventory(MASTERS, &workers3));
    let r = e3.run(&RunOptions::default()).await.expect("new agent");
    let changed: Vec<&String> = r
        .hosts
        .iter()
        .filter(|(_, h)| h.changed > 0)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(changed, ["k8s-w3"], "{}", r.plan.render());
    let cfg = String::from_utf8_lossy(
        &lab.fleet.host("k8s-w3").expect("w3").state().files["/etc/rancher/k3s/config.yaml"]
            .content,
    )
    .into_owned();
    assert!(cfg.contains("server: https://192.0.2.104:6443"), "{cfg}");

    // k8s-m3 replaced by k8s-m4: m4 joins m1, and the stale node is deleted.
    let masters: Vec<_> = MASTERS[..2].iter().copied().chain([m4]).collect();
    let after: Vec<&str> = ["k8s-m1", "k8s-m2", "k8s-m4", "k8s-w1", "k8s-w2", "k8s-w3"].to_vec();
    let registered: Vec<&str> = after.iter().copied().chain(["k8s-m3"]).collect();
    script_cluster(&lab.fleet, &registered, &after, true);
    let e4 = engine(&lab, inventory(&masters, &workers3));
    e4.run(&RunOptions::default())
        .await
        .expect("replace master");
    let cfg = String::from_utf8_lossy(
        &lab.fleet.host("k8s-m4").expect("m4").state().files["/etc/rancher/k3s/config.yaml"]
            .content,
    )
    .into_owned();
    assert!(
        cfg.contains("server: https://192.0.2.41:6443") && !cfg.contains("cluster-init"),
        "{cfg}"
    );
    assert!(
        m1.ran().iter().any(|s| s.contains("delete node 'k8s-m3'")),
        "the replaced master's node was not deleted"
    );
    // Never forced: K3s's etcd member controller removes the server's embedded etcd member
    // in the node's finalizer, which a forced delete skips. No etcdctl on K3s.
    assert!(
        !m1.ran()
            .iter()
            .any(|s| s.contains("delete node") && s.contains("--force")),
        "{:?}",
        m1.ran()
    );
    assert!(!m1.ran().iter().any(|s| s.contains("etcdctl")));

    // Uninstall removes kbz's files and stops K3s everywhere.
    let un = RunOptions {
        mode: Mode::Uninstall,
        ..RunOptions::default()
    };
    e4.run(&un).await.expect("uninstall");
    for name in after {
        let s = lab.fleet.host(name).expect("host").state();
        assert!(!s.files.contains_key("/usr/local/bin/k3s"), "{name}");
        assert!(
            !s.files.contains_key("/etc/rancher/k3s/config.yaml"),
            "{name}"
        );
        assert!(
            !s.files.keys().any(|f| f.starts_with("/etc/kbz/k8s/")),
            "{name}: {:?}",
            s.files.keys()
        );
        assert!(
            s.services
                .values()
                .all(|u| !u.active || s.services.get("ssh") == Some(u)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn nodes_that_stay_not_ready_are_e062() {
    let lab = lab("k3s", &inventory(MASTERS, WORKERS));
    let base: Vec<&str> = names(MASTERS).into_iter().chain(names(WORKERS)).collect();
    script_cluster(&lab.fleet, &base, &base[..4], false);
    let err = engine(&lab, inventory(MASTERS, WORKERS))
        .run(&RunOptions::default())
        .await
        .expect_err("w2 not ready");
    assert_eq!(err.code(), Code::E062, "{err}");
    assert!(err.to_string().contains("k8s-w2 (not registered)"), "{err}");
}

#[tokio::test]
async fn a_webhook_that_never_answers_is_e063() {
    let lab = lab("k3s", &inventory(MASTERS, WORKERS));
    let base: Vec<&str> = names(MASTERS).into_iter().chain(names(WORKERS)).collect();
    script_cluster(&lab.fleet, &base, &base, false);
    let m1 = lab.fleet.host("k8s-m1").expect("m1");
    // Scripts are matched in order: this one, for the pool only, comes first.
    m1.script(
        "metallb-pool.yaml",
        kbz_core::Output {
            status: 1,
            stdout: Vec::new(),
            stderr: b"Error from server (InternalError): error when creating \"/etc/kbz/k8s/metallb-pool.yaml\": Internal error occurred: failed calling webhook \"ipaddresspoolvalidationwebhook.metallb.io\": context deadline exceeded".to_vec(),
        },
    );
    let err = engine(&lab, inventory(MASTERS, WORKERS))
        .run(&RunOptions::default())
        .await
        .expect_err("webhook");
    assert_eq!(err.code(), Code::E063, "{err}");
}

#[tokio::test]
async fn kubeadm_inits_once_and_joins_masters_then_workers() {
    let lab = lab("kubeadm", &inventory(MASTERS, WORKERS));
    let base: Vec<&str> = names(MASTERS).into_iter().chain(names(WORKERS)).collect();
    script_cluster(&lab.fleet, &base, &base, false);
    for (_, h) in lab.fleet.hosts() {
        h.script("[ -f /etc/kubernetes/admin.conf ]", output("", 1));
        h.script("[ -f /etc/kubernetes/kubelet.conf ]", output("", 1));
        h.script(
            "kubeadm init",
            output(
                "Your Kubernetes control-plane has initialized successfully!\n",
                0,
            ),
        );
        h.script(
            "openssl x509 -pubkey",
            output(&format!("{}\n", "ab".repeat(32)), 0),
        );
        h.script(
            "kubeadm join",
            output("This node has joined the cluster\n", 0),
        );
        h.script("helm", output("kbz: unchanged\n", 0));
    }
    engine(&lab, inventory(MASTERS, WORKERS))
        .run(&RunOptions::default())
        .await
        .expect("install");
    let m1 = lab.fleet.host("k8s-m1").expect("m1");
    assert!(m1
        .ran()
        .iter()
        .any(|s| s
            .starts_with("kubeadm init --config /etc/kubernetes/kbz/kubeadm.yaml --upload-certs")));
    for name in ["k8s-m2", "k8s-m3", "k8s-w1", "k8s-w2"] {
        let h = lab.fleet.host(name).expect("host");
        assert!(
            h.ran()
                .iter()
                .any(|s| s.starts_with("kubeadm join --config")),
            "{name} did not join"
        );
        let join =
            String::from_utf8_lossy(&h.state().files["/etc/kubernetes/kbz/join.yaml"].content)
                .into_owned();
        assert!(
            join.contains(&format!("sha256:{}", "ab".repeat(32))),
            "{join}"
        );
        assert_eq!(
            name.contains("-m"),
            join.contains("certificateKey"),
            "{name}: {join}"
        );
        assert!(h.state().packages.contains("kubeadm"));
    }
    assert!(!lab
        .fleet
        .host("k8s-w1")
        .expect("w1")
        .ran()
        .iter()
        .any(|s| s.contains("kubeadm init")));
    let _ = Kubernetes.name();
}

#[tokio::test]
async fn health_reports_nodes_etcd_members_pods_and_the_vip_from_one_probe_per_host() {
    use kbz_core::health::{render_output, HealthStatus};
    use kbz_core::health_run::check_component;
    let inv = inventory(MASTERS, WORKERS);
    let lab = lab("k3s", &inv);
    let nodes = nodes_table(&["k8s-m1", "k8s-m2", "k8s-m3", "k8s-w1"])
        .replace("k8s-m3   Ready", "k8s-m3   NotReady");
    let pods =
        "coredns-1   1/1   Running   0   1d\nmetrics-server-1   0/1   CrashLoopBackOff   9   1d\n";
    for (name, h) in lab.fleet.hosts() {
        let text = if name.contains("-m") {
            render_output(&[
                ("kubernetes", "nodes", &nodes, 0),
                ("kubernetes", "pods", pods, 0),
                ("kubernetes", "vip", "ok", 0),
            ])
        } else {
            render_output(&[("kubernetes", "unit", "active", 0)])
        };
        h.script("kbz-health batched probes", output(&text, 0));
    }
    let ctx = Context::new(
        inv.clone(),
        lab.config.clone(),
        Secrets::placeholders(Kubernetes.secret_names()),
    );
    let hx = kbz_testkit::host_execs(&lab.fleet, &inv.hosts);
    let checks = check_component(&ctx, &Kubernetes, &hx).await;
    let find = |host: &str, check: &str| {
        checks
            .iter()
            .find(|c| c.host == host && c.check == check)
            .unwrap_or_else(|| panic!("no {check} on {host}: {checks:#?}"))
    };
    assert!(find("k8s-m1", "node Ready").is_ok());
    assert_eq!(find("k8s-m3", "node Ready").status, HealthStatus::Degraded);
    let w2 = find("k8s-w2", "node Ready");
    assert_eq!(
        (w2.status, w2.code),
        (HealthStatus::Degraded, Some(Code::E062))
    );
    let etcd = find("-", "etcd members");
    assert_eq!(etcd.status, HealthStatus::Degraded, "2 of 3 is a majority");
    assert!(etcd.detail.starts_with("2 of 3"), "{}", etcd.detail);
    assert!(find("-", "kube-system pods")
        .detail
        .contains("metrics-server-1 CrashLoopBackOff"));
    assert!(find("-", "API through the VIP").is_ok());
    assert!(find("k8s-w1", "node agent").is_ok());
}

const MEMBERS: &str = "8e9e05c52164694d, started, k8s-m1, https://192.0.2.41:2380, https://192.0.2.41:2379, false\n3b5c1d2e4f6a7b8c, started, k8s-m2, https://192.0.2.42:2380, https://192.0.2.42:2379, false\n2a1d6d3e5b1f0c77, started, k8s-m3, https://192.0.2.43:2380, https://192.0.2.43:2379, false\n6c7d8e9f0a1b2c3d, started, k8s-m4, https://192.0.2.44:2380, https://192.0.2.44:2379, false\n";

#[tokio::test]
async fn kubeadm_removes_a_replaced_masters_etcd_member_before_its_node() {
    let m4 = ("k8s-m4", "192.0.2.44");
    let all: Vec<_> = MASTERS
        .iter()
        .chain(WORKERS)
        .chain([&m4])
        .copied()
        .collect();
    let lab = lab("kubeadm", &inventory(&all, &[]));
    // k8s-m3 was replaced by k8s-m4: the cluster still has m3's node and etcd member.
    let after = ["k8s-m1", "k8s-m2", "k8s-m4", "k8s-w1", "k8s-w2"];
    let registered: Vec<&str> = after.iter().copied().chain(["k8s-m3"]).collect();
    script_cluster(&lab.fleet, &registered, &after, true);
    for (name, h) in lab.fleet.hosts() {
        h.script(
            "[ -f /etc/kubernetes/kubelet.conf ]",
            output("", if name == "k8s-m4" { 1 } else { 0 }),
        );
        h.script(
            "kubeadm init phase",
            output("bootstrap token refreshed\n", 0),
        );
        h.script(
            "openssl x509 -pubkey",
            output(&format!("{}\n", "cd".repeat(32)), 0),
        );
        h.script(
            "kubeadm join",
            output("This node has joined the cluster\n", 0),
        );
        h.script("helm", output("kbz: unchanged\n", 0));
        h.script("member list", output(MEMBERS, 0));
        h.script(
            "member remove",
            output(
                "Member 2a1d6d3e5b1f0c77 removed from cluster 1c4ba8d0ef0b7f07\n",
                0,
            ),
        );
    }
    let masters: Vec<_> = MASTERS[..2].iter().copied().chain([m4]).collect();
    let e = engine(&lab, inventory(&masters, WORKERS));
    let r = e.run(&RunOptions::default()).await.expect("replace master");
    let m1 = lab.fleet.host("k8s-m1").expect("m1");
    let ran = m1.ran();
    let pos = |needle: &str| {
        ran.iter()
            .position(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("m1 never ran `{needle}`: {ran:#?}"))
    };
    // Listed and removed inside m1's etcd pod with kubeadm's etcd certificates; only m3.
    let list = pos("exec 'etcd-k8s-m1' -- etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key member list");
    let remove = pos("etcdctl --endpoints=https://127.0.0.1:2379");
    let remove = ran[remove..]
        .iter()
        .position(|s| s.contains("member remove 2a1d6d3e5b1f0c77"))
        .map(|i| i + remove)
        .expect("m3's member removed");
    let delete = pos("delete node 'k8s-m3'");
    assert!(list < remove && remove < delete, "{ran:#?}");
    assert_eq!(
        ran.iter().filter(|s| s.contains("member remove")).count(),
        1,
        "{ran:#?}"
    );
    assert!(lab
        .fleet
        .host("k8s-m4")
        .expect("m4")
        .ran()
        .iter()
        .any(|s| s.starts_with("kubeadm join --config")));
    let details: Vec<&str> = r
        .cluster_changes
        .iter()
        .map(|c| c.detail.as_str())
        .collect();
    assert!(
        details.contains(&"removed etcd member 2a1d6d3e5b1f0c77 (k8s-m3): not an inventory master"),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("deleted node k8s-m3")),
        "{details:?}"
    );

    // Converged: m3 gone from the member list and the nodes; nothing is removed again.
    let members_after: String = MEMBERS
        .lines()
        .filter(|l| !l.contains("k8s-m3"))
        .map(|l| format!("{l}\n"))
        .collect();
    script_cluster(&lab.fleet, &after, &after, true);
    for (_, h) in lab.fleet.hosts() {
        h.script("[ -f /etc/kubernetes/kubelet.conf ]", output("", 0));
        h.script("helm", output("kbz: unchanged\n", 0));
        h.script("member list", output(&members_after, 0));
    }
    let again = e.run(&RunOptions::default()).await.expect("re-run");
    assert!(
        again.cluster_changes.is_empty(),
        "{:?}",
        again.cluster_changes
    );
    assert_eq!(
        m1.ran()
            .iter()
            .filter(|s| s.contains("member remove"))
            .count(),
        1
    );

    // A member list that does not even list m1 is not trusted: E065, nothing removed.
    for (_, h) in lab.fleet.hosts() {
        h.script(
            "member list",
            output("2a1d6d3e5b1f0c77, started, k8s-m3, https://192.0.2.43:2380, https://192.0.2.43:2379, false\n", 0),
        );
    }
    let err = e
        .run(&RunOptions::default())
        .await
        .expect_err("strange list");
    assert_eq!(err.code(), Code::E065, "{err}");
    assert_eq!(
        m1.ran()
            .iter()
            .filter(|s| s.contains("member remove"))
            .count(),
        1
    );
}
