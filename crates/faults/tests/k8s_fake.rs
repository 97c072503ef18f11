//! `k8s-master-crash` on strict fake hosts: three K3s (or kubeadm) masters whose `kubectl`
//! answers are scripted and change as the fault goes on, and a loopback HTTPS server
//! standing in for the API behind the VIP (HAProxy in front of the API servers). The
//! server has a certificate for `kubernetes` from a test CA and requires a client
//! certificate from that CA, so the probes run the real path: the admin kubeconfig read from
//! a master, the CA trusted alone, the client certificate presented, `/readyz` over a fresh
//! TLS connection each time.
//!
//! The power commands are real controller commands (`touch` / `rm` of a marker file); a
//! watcher turns the marker into what a real cluster shows: the victim answers nothing, the
//! API through the VIP answers nothing for a while (until HAProxy marks the dead server
//! down), the survivors list the victim NotReady and the `kube-controller-manager` lease
//! moves; after power-on the victim answers again and rejoins Ready.

use kbz_core::config::FailoverConfig;
use kbz_core::{Host, Role};
use kbz_errors::Code;
use kbz_faults::{HostCommands, K8sTarget, Member, Scenario, Target, Timing};
use kbz_kubernetes::Flavor;
use kbz_testkit::{output, FakeHost};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MASTERS: [&str; 3] = ["k8s-m1", "k8s-m2", "k8s-m3"];

/// A test CA, the API server's certificate for `kubernetes` and an admin client certificate.
struct Pki {
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    client_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "kbz-test-k8s-ca");
    let ca = p.self_signed(&ca_key).expect("ca");
    let skey = KeyPair::generate().expect("server key");
    let mut sp = CertificateParams::new(vec!["kubernetes".to_string()]).expect("params");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&skey, &ca, &ca_key).expect("server cert");
    let ckey = KeyPair::generate().expect("client key");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("params");
    cp.distinguished_name
        .push(DnType::CommonName, "system:admin");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&ckey, &ca, &ca_key).expect("client cert");
    Pki {
        ca_pem: ca.pem(),
        server_chain: vec![server.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(skey.serialize_der().into()),
        ca_der: ca.der().clone(),
        client_pem: client.pem(),
        client_key_pem: ckey.serialize_pem(),
    }
}

/// The loopback API behind the VIP: `/readyz` answers `ok` to clients with a certificate of
/// the CA, except while `down` (the connection is dropped, as a dead backend's would be).
struct Api {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Api {
    fn start(pki: &Pki) -> Api {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der.clone()).expect("root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
                .expect("server config"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let (down, answered, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (d, a, s) = (down.clone(), answered.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let sock = match listener.accept() {
                    Ok((sock, _)) => sock,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                if d.load(Ordering::SeqCst) {
                    drop(sock);
                    continue;
                }
                let (config, a) = (config.clone(), a.clone());
                std::thread::spawn(move || serve(sock, config, &a));
            }
        });
        Api {
            addr,
            down,
            answered,
            stop,
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(sock: std::net::TcpStream, config: Arc<rustls::ServerConfig>, answered: &AtomicU64) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let (status, body) = if line.starts_with("GET /readyz ") {
        answered.fetch_add(1, Ordering::SeqCst);
        ("200 OK", "ok")
    } else {
        ("404 Not Found", "not found")
    };
    let _ = write!(
        tls,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn nodes(not_ready: Option<&str>) -> String {
    MASTERS
        .iter()
        .map(|n| {
            let status = if Some(*n) == not_ready {
                "NotReady"
            } else {
                "Ready"
            };
            format!("{n}   {status}   control-plane,etcd,master   1d   v1.34.2+k3s1\n")
        })
        .collect()
}

fn lease(holder: &str) -> String {
    format!("{holder}_5f0c6a4e-1111-2222-3333-444455556666")
}

/// Scripts a healthy view on `h`: every master Ready, the etcd pods Running, `holder` leading.
fn script_view(h: &FakeHost, not_ready: Option<&str>, holder: &str) {
    h.script("get nodes --no-headers", output(&nodes(not_ready), 0));
    h.script(
        "get lease kube-controller-manager",
        output(&lease(holder), 0),
    );
    let pods: String = MASTERS
        .iter()
        .filter(|n| Some(**n) != not_ready)
        .map(|n| format!("etcd-{n}   1/1   Running   0   1d\n"))
        .collect();
    h.script("get pods -l component=etcd", output(&pods, 0));
}

struct Fleet {
    fakes: Vec<Arc<FakeHost>>,
    target: Target,
    markers: PathBuf,
    _dir: tempfile::TempDir,
}

fn fleet(flavor: Flavor, pki: &Pki, api: &Api) -> Fleet {
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = kbz_kubernetes::kubeconfig::render(
        "https://127.0.0.1:6443",
        &pki.ca_pem,
        &pki.client_pem,
        &pki.client_key_pem,
    );
    let fakes: Vec<Arc<FakeHost>> = MASTERS
        .iter()
        .map(|n| {
            let h = Arc::new(FakeHost::debian(n));
            h.with_state(|s| {
                s.files.insert(
                    flavor.admin_kubeconfig().into(),
                    kbz_testkit::FakeFile {
                        content: kubeconfig.clone().into_bytes(),
                        mode: 0o600,
                        owner: "root:root".into(),
                    },
                )
            });
            script_view(&h, None, "k8s-m1");
            h
        })
        .collect();
    let members: Vec<Member> = fakes
        .iter()
        .enumerate()
        .map(|(i, f)| Member {
            host: Host::new(
                MASTERS[i],
                format!("192.0.2.4{}", i + 1).parse().expect("ip"),
                &[Role::K8sMaster],
            ),
            exec: f.clone(),
        })
        .collect();
    let vip = "192.0.2.104".parse().expect("vip");
    let m = dir.path().display().to_string();
    let mut routes = kbz_core::net::Routes::direct();
    routes.insert(vip, 6443, api.addr);
    let target = Target {
        members: Vec::new(),
        pg: None,
        redis: None,
        k8s: Some(K8sTarget {
            members,
            vip,
            port: 6443,
            flavor,
            timeout: Duration::from_secs(1),
            // The VIP is reached at the loopback server, as a bastion's tunnel would be.
            routes,
        }),
        galera: None,
        rabbitmq: None,
        lbs: Vec::new(),
        power: Some(HostCommands {
            off: format!("touch {m}/off-{{host}}"),
            on: format!("rm -f {m}/off-{{host}}"),
        }),
        isolate: None,
        writers: 2,
        routes: Default::default(),
    };
    Fleet {
        fakes,
        target,
        markers: dir.path().to_path_buf(),
        _dir: dir,
    }
}

/// What the watcher saw and did.
#[derive(Debug, Default)]
struct Seen {
    powered_off: Vec<String>,
    powered_on: Vec<String>,
}

/// Turns the power markers into the cluster's behaviour (see the file's doc): the API
/// through the VIP is down for `api_gap` after the power cut, the lease moves to k8s-m2
/// after `lease_after`, the victim is Ready again `rejoin_after` past the power-on.
fn watcher(
    f: &Fleet,
    api: &Api,
    api_gap: Duration,
    lease_after: Duration,
    rejoin_after: Duration,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<Seen>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (fakes, dir, down, s) = (
        f.fakes.clone(),
        f.markers.clone(),
        api.down.clone(),
        stop.clone(),
    );
    let h = std::thread::spawn(move || {
        let mut seen = Seen::default();
        let mut off: Option<(String, Instant)> = None;
        let mut on_at: Option<Instant> = None;
        let mut lease_moved = false;
        while !s.load(Ordering::SeqCst) {
            let marker = |n: &str| Path::new(&dir).join(format!("off-{n}")).exists();
            if off.is_none() {
                if let Some(v) = MASTERS.iter().find(|n| marker(n)) {
                    seen.powered_off.push(v.to_string());
                    down.store(true, Ordering::SeqCst);
                    let victim = &fakes[MASTERS.iter().position(|n| n == v).expect("pos")];
                    // Powered off: nothing answers on it.
                    victim.script("timeout 6", output("", 255));
                    for (i, h) in fakes.iter().enumerate() {
                        if MASTERS[i] != *v {
                            script_view(h, Some(v), "k8s-m1");
                        }
                    }
                    off = Some((v.to_string(), Instant::now()));
                }
            }
            if let Some((v, at)) = &off {
                if at.elapsed() >= api_gap {
                    down.store(false, Ordering::SeqCst);
                }
                if !lease_moved && at.elapsed() >= lease_after {
                    lease_moved = true;
                    for (i, h) in fakes.iter().enumerate() {
                        if MASTERS[i] != v {
                            script_view(h, Some(v), "k8s-m2");
                        }
                    }
                }
                if on_at.is_none() && !marker(v) {
                    seen.powered_on.push(v.clone());
                    on_at = Some(Instant::now());
                }
                if on_at.is_some_and(|t| t.elapsed() >= rejoin_after) {
                    // Back and Ready; the lease stays where it moved.
                    for h in &fakes {
                        script_view(h, None, "k8s-m2");
                    }
                    off = None;
                    on_at = None;
                    lease_moved = false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    });
    (stop, h)
}

fn timing() -> Timing {
    Timing {
        before: Duration::from_secs(1),
        fault: Duration::from_secs(3),
        after: Duration::from_secs(1),
        healthy_within: Duration::from_secs(30),
        stable_samples: 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_k3s_master_costs_the_api_a_measured_gap_and_rejoins_ready() {
    let pki = pki();
    let api = Api::start(&pki);
    let f = fleet(Flavor::K3s, &pki, &api);
    let (stop, seen) = watcher(
        &f,
        &api,
        Duration::from_millis(1500),
        Duration::from_millis(800),
        Duration::from_millis(500),
    );
    let s = Scenario::named("k8s-master-crash").expect("scenario");
    let r = kbz_faults::run_once(&s, &f.target, &timing(), 1).await;
    stop.store(true, Ordering::SeqCst);
    let seen = seen.join().expect("watcher");

    assert_eq!(r.error, None, "{r:#?}");
    assert_eq!(r.service, "kubernetes");
    // The victim is the lease holder; the lease moved to a survivor.
    assert_eq!(
        (
            r.victim.as_str(),
            r.leader_before.as_str(),
            r.leader_after.as_str()
        ),
        ("k8s-m1", "k8s-m1", "k8s-m2")
    );
    assert_eq!(seen.powered_off, ["k8s-m1"]);
    assert_eq!(seen.powered_on, ["k8s-m1"]);
    let leader = r.new_leader_secs.expect("a new lease holder");
    assert!((0.5..4.0).contains(&leader), "{leader}");
    // The API through the VIP answered before and after, and not for about 1.5 s.
    assert!(r.vip.acked > 10, "{r:#?}");
    assert!(api.answered.load(Ordering::SeqCst) >= r.vip.acked);
    assert!(
        (1.2..3.5).contains(&r.max_write_gap_secs),
        "gap {}",
        r.max_write_gap_secs
    );
    assert!(r.writes_resumed_secs.is_some());
    assert!(
        r.victim_streaming_secs.is_some(),
        "the victim rejoined Ready"
    );
    assert_eq!(r.replicas_streaming, 2, "both other masters Ready");
    assert!(r.passed(), "{r:#?}");
    assert!(!r.two_primaries_seen);
    // The survivors were asked who leads; the victim's kubeconfig was the first read.
    let m2 = f.fakes[1].ran();
    assert!(
        m2.iter().any(|c| c
            .contains("k3s kubectl -n kube-system get lease kube-controller-manager -o jsonpath=")),
        "{m2:?}"
    );
    // Inside the default budget; outside a 1 s one, with the key named.
    let cfg = FailoverConfig::default();
    assert_eq!(kbz_faults::evaluate(&s, &cfg, &r), vec![]);
    let tight = FailoverConfig {
        k8s_api_gap_secs: 1.0,
        ..FailoverConfig::default()
    };
    let b = kbz_faults::evaluate(&s, &tight, &r);
    assert_eq!(
        (b.len(), b[0].code, b[0].figure),
        (1, Code::E072, "write_gap_secs")
    );
    assert!(
        b[0].message.contains("k8s_api_gap_secs = 1"),
        "{}",
        b[0].message
    );
    // Nothing left behind: the victim is powered on.
    assert!(!f.markers.join("off-k8s-m1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubeadm_health_needs_every_etcd_pod_and_the_run_refuses_without_it() {
    let pki = pki();
    let api = Api::start(&pki);
    let f = fleet(Flavor::Kubeadm, &pki, &api);
    // etcd-k8s-m3 is not ready: not healthy, nothing is injected.
    for h in &f.fakes {
        h.script(
            "get pods -l component=etcd",
            output(
                "etcd-k8s-m1   1/1   Running   0   1d\netcd-k8s-m2   1/1   Running   0   1d\netcd-k8s-m3   0/1   CrashLoopBackOff   7   1d\n",
                0,
            ),
        );
    }
    let s = Scenario::named("k8s-master-crash").expect("scenario");
    let t = Timing {
        healthy_within: Duration::from_secs(3),
        ..timing()
    };
    let r = kbz_faults::run_once(&s, &f.target, &t, 1).await;
    let e = r.error.expect("unhealthy");
    assert!(e.starts_with(&Code::E031.to_string()), "{e}");
    assert!(e.contains("etcd-k8s-m3 CrashLoopBackOff 0/1"), "{e}");
    assert!(!f.markers.join("off-k8s-m1").exists());
    assert!(f.fakes[0].ran().iter().any(|c| c.contains(
        "kubectl --kubeconfig=/etc/kubernetes/admin.conf -n kube-system get pods -l component=etcd"
    )));
}

#[tokio::test]
async fn without_k8s_masters_the_scenario_refuses_with_e010() {
    let s = Scenario::named("k8s-master-crash").expect("scenario");
    let t = Target {
        members: Vec::new(),
        pg: None,
        redis: None,
        k8s: None,
        galera: None,
        rabbitmq: None,
        lbs: Vec::new(),
        power: Some(HostCommands {
            off: "false {host}".into(),
            on: "false {host}".into(),
        }),
        isolate: None,
        writers: 1,
        routes: Default::default(),
    };
    let r = kbz_faults::run_once(&s, &t, &timing(), 1).await;
    let e = r.error.expect("refused");
    assert!(e.starts_with(&Code::E010.to_string()), "{e}");
    assert!(e.contains("0 k8s-master host(s)"), "{e}");
    assert_eq!(r.victim, "");
}
