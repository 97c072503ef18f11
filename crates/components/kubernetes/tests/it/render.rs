//! Snapshots of every file rendered for the example inventory with both flavors, every
//! manifest kbz renders validated offline by `kubernetes-validate --strict` (core kinds
//! against the pinned Kubernetes version's schemas; custom resources by kbz's own checks),
//! and the default pins.

use kbz_core::{Component, Context, Resource};
use kbz_kubernetes::{addons, pins, Kubernetes};
use kbz_testkit::{rendered_files, snapshot_name};
use std::path::PathBuf;

/// The example inventory and config with `[kubernetes] flavor` set and placeholder secrets.
pub fn context(flavor: &str) -> Context {
    let mut cfg = kbz_testkit::example_config();
    cfg.kubernetes.flavor = flavor.into();
    Context::new(
        kbz_testkit::example_inventory(),
        cfg,
        kbz_core::Secrets::placeholders(Kubernetes.secret_names()),
    )
}

#[test]
fn rendered_files_for_the_example_inventory_both_flavors() {
    for flavor in ["k3s", "kubeadm"] {
        let ctx = context(flavor);
        assert_eq!(kbz_testkit::members(&Kubernetes, &ctx).len(), 6);
        for host in ["k8s-m1", "k8s-m2", "k8s-w1"] {
            let host = ctx.inventory.host(host).expect("host").clone();
            insta::assert_snapshot!(
                snapshot_name(&host.hostname, &format!("{flavor}_files")),
                rendered_files(&Kubernetes, &ctx, &host)
            );
        }
    }
}

#[test]
fn k3s_servers_bootstrap_once_and_agents_use_the_vip() {
    let ctx = context("k3s");
    let cfg = |h: &str| {
        kbz_kubernetes::k3s_config(&ctx, ctx.inventory.host(h).expect("host")).expect("render")
    };
    let m1 = cfg("k8s-m1");
    assert!(
        m1.contains("cluster-init: true") && !m1.contains("server: "),
        "{m1}"
    );
    assert!(m1.contains("tls-san:\n  - 192.0.2.104\n"), "{m1}");
    assert!(
        m1.contains("  - servicelb\n  - traefik\n") && m1.contains("flannel-backend: none"),
        "{m1}"
    );
    let m2 = cfg("k8s-m2");
    assert!(
        m2.contains("server: https://192.0.2.41:6443") && !m2.contains("cluster-init"),
        "{m2}"
    );
    let w1 = cfg("k8s-w1");
    assert!(
        w1.contains("server: https://192.0.2.104:6443") && !w1.contains("tls-san"),
        "{w1}"
    );
    assert!(w1.contains("token-file: /etc/rancher/k3s/kbz-token"));
    // HAProxy's anonymous GET /readyz must reach every server's API (K3s turns anonymous
    // requests off by default); agents run no API server.
    for s in [&m1, &m2] {
        assert!(
            s.contains("kube-apiserver-arg:\n  - anonymous-auth=true\n"),
            "{s}"
        );
    }
    assert!(!w1.contains("kube-apiserver-arg"), "{w1}");
    // The token is only in the 0600 token file, never in config.yaml.
    let token = ctx.secret(kbz_kubernetes::TOKEN_SECRET).expect("token");
    assert!(!m2.contains(token.expose()));
}

#[test]
fn kubeadm_points_every_node_at_the_vip_with_derived_secrets() {
    let ctx = context("kubeadm");
    let m1 = ctx.inventory.host("k8s-m1").expect("m1");
    let init = kbz_kubernetes::init_config(&ctx, m1).expect("init");
    assert!(
        init.contains("controlPlaneEndpoint: \"192.0.2.104:6443\""),
        "{init}"
    );
    assert!(
        init.contains("podSubnet: 10.42.0.0/16") && init.contains("cgroupDriver: systemd"),
        "{init}"
    );
    let s = kbz_kubernetes::KubeadmSecrets::of(&ctx).expect("secrets");
    let (a, b) = s.token.split_once('.').expect("token shape");
    assert!(
        a.len() == 6
            && b.len() == 16
            && s.token
                .bytes()
                .all(|c| c == b'.' || c.is_ascii_digit() || c.is_ascii_lowercase())
    );
    assert_eq!(s.certificate_key.len(), 64);
    assert!(format!("{s:?}").contains("****") && !format!("{s:?}").contains(&s.token));
    let w = ctx.inventory.host("k8s-w1").expect("w1");
    let join = kbz_kubernetes::join_config(&ctx, w, "sha256:abc").expect("join");
    assert!(
        join.contains("apiServerEndpoint: \"192.0.2.104:6443\"") && !join.contains("controlPlane:"),
        "{join}"
    );
    let m2 = ctx.inventory.host("k8s-m2").expect("m2");
    let join = kbz_kubernetes::join_config(&ctx, m2, "sha256:abc").expect("join");
    assert!(
        join.contains("controlPlane:\n  certificateKey: ")
            && join.contains("advertiseAddress: 192.0.2.42"),
        "{join}"
    );
    let containerd = kbz_kubernetes::containerd_config(&ctx).expect("containerd");
    assert!(containerd.contains("SystemdCgroup = true"));
}

/// `kubernetes-validate`, installed by .ci/run into /opt/kbz-ci-venv (PyPI package
/// `kubernetes-validate`); a missing validator fails with the install line.
fn kubernetes_validate() -> PathBuf {
    let venv = PathBuf::from("/opt/kbz-ci-venv/bin/kubernetes-validate");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubernetes-validate"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "kubernetes-validate is not installed; install it (as .ci/run does) with: \
             python3 -m venv /opt/kbz-ci-venv && /opt/kbz-ci-venv/bin/pip install kubernetes-validate"
        )
    })
}

#[test]
fn every_rendered_manifest_passes_kubernetes_validate_strict() {
    let tool = kubernetes_validate();
    let dir = tempfile::tempdir().expect("tempdir");
    for (flavor, version) in [("k3s", "1.34.0"), ("kubeadm", "1.31.0")] {
        let ctx = context(flavor);
        let manifests = addons::manifests(&ctx, flavor == "k3s").expect("manifests");
        assert!(manifests.len() >= 4, "{manifests:?}");
        for m in manifests {
            // Custom resources by kbz's own checks (the validator only warns on them).
            for o in &m.objects {
                addons::check_custom_resource(o).unwrap_or_else(|e| panic!("{}: {e}", m.file));
            }
            let path = dir.path().join(format!("{flavor}-{}", m.file));
            std::fs::write(&path, m.yaml().expect("yaml")).expect("write");
            let out = std::process::Command::new(&tool)
                .args(["--strict", "-k", version])
                .arg(&path)
                .output()
                .expect("run kubernetes-validate");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{flavor} {}: {text}", m.file);
            assert!(!text.contains("ERROR"), "{flavor} {}: {text}", m.file);
        }
    }
    // The validator does reject a broken core object (so a pass above means something).
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\nspec:\n  finalizers: 3\n",
    )
    .expect("write");
    let out = std::process::Command::new(&tool)
        .args(["--strict", "-k", "1.34.0"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "kubernetes-validate accepted a broken Namespace"
    );
}

#[test]
fn default_pins_are_well_formed_and_k3s_is_checksummed() {
    for p in pins::all() {
        let problems: Vec<String> = p
            .check()
            .into_iter()
            .filter(|e| !p.sha256.is_empty() || !e.contains("sha256"))
            .collect();
        assert!(problems.is_empty(), "{}: {problems:?}", p.name);
    }
    assert!(pins::k3s().check().is_empty());
    assert!(pins::k3s_images().check().is_empty());
    assert!(pins::k3s()
        .resolved_source()
        .expect("url")
        .to_string()
        .contains("v1.34.2%2Bk3s1/k3s"));
}

#[test]
fn uninstall_removes_what_install_wrote() {
    for flavor in ["k3s", "kubeadm"] {
        let ctx = context(flavor);
        for h in ["k8s-m1", "k8s-w1"] {
            let host = ctx.inventory.host(h).expect("host").clone();
            let removed = Kubernetes.uninstall(&ctx, &host).expect("uninstall");
            for r in Kubernetes.desired(&ctx, &host).expect("desired") {
                match r {
                    Resource::File {
                        path,
                        present: true,
                        ..
                    } if path != kbz_kubernetes::KUBEADM_INIT || h == "k8s-m1" => {
                        assert!(
                            removed.contains(&Resource::absent_file(&path)),
                            "{flavor} {h}: {path} is not removed"
                        );
                    }
                    Resource::Artifact { path, pin, .. } => {
                        assert!(
                            removed.contains(&Resource::absent_artifact(&path, &pin)),
                            "{flavor} {h}: {path} is not removed"
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn every_script_is_valid_sh() {
    let mut scripts = Vec::new();
    for flavor in ["k3s", "kubeadm"] {
        let ctx = context(flavor);
        scripts.push(kbz_kubernetes::apply_script(
            &ctx,
            "/etc/kbz/k8s/metallb-pool.yaml",
        ));
        for h in ["k8s-m1", "k8s-w1"] {
            let host = ctx.inventory.host(h).expect("host").clone();
            for r in Kubernetes.desired(&ctx, &host).expect("desired") {
                scripts.extend(r.scripts().into_iter().map(str::to_string));
            }
        }
    }
    kbz_testkit::assert_valid_sh(&scripts);
}
