//! The Kubernetes side of `k8s-master-crash`: the API through its VIP under a probe load
//! and the control plane's health as the masters report it.
//!
//! - Healthy: the first master that answers `kubectl get nodes` lists every master Ready,
//!   every master's etcd member is there (K3s: a Ready node with the `etcd` role; kubeadm:
//!   its `etcd-NODE` static pod Running and ready), the `kube-controller-manager` lease has
//!   a holder among the masters (the "leader"), and `/readyz` through the VIP answers `ok`.
//! - The workload: each [`K8sProber`] sends `GET /readyz` through the VIP over a fresh TLS
//!   connection per request (HAProxy fronts the API in TCP mode, so a kept-alive connection
//!   would stay on one API server; a new client is what availability means), verified
//!   against the cluster CA and authenticated with the admin client certificate read from a
//!   master's admin kubeconfig (K3s turns anonymous access off). `/readyz` includes the API
//!   server's etcd check, so an answer means the answering server reaches an etcd quorum.
//!   A probe writes nothing: an "acknowledged write" is an answered probe, none can be lost,
//!   and the figure that counts is the longest gap between answers.
//! - The victim is the master holding the `kube-controller-manager` lease; a new leader is
//!   the lease held by another master.

use crate::observe::Member;
use crate::service::ServiceTarget;
use crate::workload::{WriteError, Writer};
use crate::FaultError;
use kbz_core::Cmd;
use kbz_kubernetes::kubeconfig::{admin_credentials, AdminCredentials};
use kbz_kubernetes::Flavor;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The lease whose holder is the scenario's leader.
pub const LEASE: &str = "kube-controller-manager";

/// The name the probes use for the API server: a DNS name of every K3s and kubeadm API
/// server certificate, resolved to the VIP (or its tunnel) by the client itself.
pub const API_NAME: &str = "kubernetes";

const PROBE: Duration = Duration::from_secs(8);

/// The Kubernetes control plane under test.
#[derive(Debug, Clone)]
pub struct K8sTarget {
    /// The `k8s-master` hosts, in inventory order.
    pub members: Vec<Member>,
    /// The API VIP (`[vips] k8s_api`).
    pub vip: IpAddr,
    /// The API port on the VIP (6443).
    pub port: u16,
    /// K3s or kubeadm: which kubectl and which admin kubeconfig.
    pub flavor: Flavor,
    /// Each probe's timeout (connect, TLS and answer).
    pub timeout: Duration,
    /// Where the VIP is really reached (a bastion's tunnel); empty: directly.
    pub routes: kbz_core::net::Routes,
}

impl K8sTarget {
    /// The socket the probes connect to.
    pub fn api_socket(&self) -> SocketAddr {
        self.routes.resolve(self.vip, self.port)
    }
}

/// The Kubernetes API as a [`ServiceTarget`].
#[derive(Debug)]
pub struct K8sService {
    /// The target.
    pub t: K8sTarget,
    client: OnceLock<reqwest::Client>,
    answered: Arc<Mutex<Vec<i64>>>,
}

impl K8sService {
    /// The service of `t` (credentials are read on first use).
    pub fn new(t: K8sTarget) -> K8sService {
        K8sService {
            t,
            client: OnceLock::new(),
            answered: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn kubectl(&self) -> &'static str {
        self.t.flavor.kubectl()
    }

    /// The probe client, built once from the first master's admin kubeconfig that reads.
    async fn client(&self) -> Result<&reqwest::Client, FaultError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let path = self.t.flavor.admin_kubeconfig();
        let mut why = format!("no master to read {path} from");
        for m in &self.t.members {
            match m.exec.read_file(path).await {
                Ok(Some(bytes)) => {
                    let creds = admin_credentials(&String::from_utf8_lossy(&bytes))
                        .map_err(|e| self.err(format!("{path} on {}: {e}", m.host.hostname)))?;
                    let c = probe_client(&creds, self.t.api_socket(), self.t.timeout)
                        .map_err(|e| self.err(format!("{path} on {}: {e}", m.host.hostname)))?;
                    return Ok(self.client.get_or_init(|| c));
                }
                Ok(None) => why = format!("{path} is missing on {}", m.host.hostname),
                Err(e) => why = format!("reading {path} on {}: {e}", m.host.hostname),
            }
        }
        Err(self.err(why))
    }

    fn err(&self, reason: String) -> FaultError {
        FaultError::Kubernetes {
            addr: self.vip(),
            reason,
        }
    }

    /// `kubectl ARGS` on `m`: its stdout when it succeeded.
    async fn kubectl_on(&self, m: &Member, args: &str) -> Option<String> {
        let script = format!("timeout 6 {} {args}", self.kubectl());
        let out = m.exec.run(&Cmd::new(script).timeout(PROBE)).await.ok()?;
        out.success().then(|| out.stdout_str())
    }

    /// The lease holder's node name as the first of `members` that answers reports it.
    async fn lease_holder(&self, members: &[&Member]) -> Option<String> {
        for m in members {
            let args =
                format!("-n kube-system get lease {LEASE} -o jsonpath='{{.spec.holderIdentity}}'");
            if let Some(out) = self.kubectl_on(m, &args).await {
                return holder_node(&out);
            }
        }
        None
    }

    /// The node list as the first master that answers sees it: `(who answered, nodes)`.
    async fn nodes(&self) -> Option<(&Member, Vec<kbz_kubernetes::health::Node>)> {
        for m in &self.t.members {
            if let Some(out) = self.kubectl_on(m, "get nodes --no-headers").await {
                return Some((m, kbz_kubernetes::health::parse_nodes(&out)));
            }
        }
        None
    }

    /// What is wrong with the etcd members, asked on `m`.
    async fn etcd_problem(
        &self,
        m: &Member,
        nodes: &[kbz_kubernetes::health::Node],
    ) -> Option<String> {
        let names = self.t.members.iter().map(|x| x.host.hostname.as_str());
        match self.t.flavor {
            Flavor::K3s => {
                let missing: Vec<&str> = names
                    .filter(|n| {
                        !nodes.iter().any(|x| {
                            x.name == *n && x.ready && x.roles.split(',').any(|r| r == "etcd")
                        })
                    })
                    .collect();
                (!missing.is_empty())
                    .then(|| format!("no Ready etcd member on {}", missing.join(", ")))
            }
            Flavor::Kubeadm => {
                let Some(out) = self
                    .kubectl_on(m, "-n kube-system get pods -l component=etcd --no-headers")
                    .await
                else {
                    return Some("the etcd pods cannot be listed".into());
                };
                let bad = kbz_kubernetes::health::unhealthy_pods(&out);
                let missing: Vec<String> = names
                    .filter_map(|n| {
                        let pod = format!("etcd-{n}");
                        let listed = out
                            .lines()
                            .any(|l| l.split_whitespace().next() == Some(pod.as_str()));
                        match bad.iter().find(|(p, _)| *p == pod) {
                            Some((_, s)) => Some(format!("{pod} {s}")),
                            None if !listed => Some(format!("{pod} missing")),
                            None => None,
                        }
                    })
                    .collect();
                (!missing.is_empty()).then(|| format!("etcd: {}", missing.join(", ")))
            }
        }
    }

    /// One `GET /readyz` through the VIP: `Ok` on `200 ok`.
    async fn readyz(&self) -> Result<(), WriteError> {
        let c = self
            .client()
            .await
            .map_err(|e| WriteError::not_sent(e.to_string()))?;
        readyz(c, self.t.api_socket().port()).await
    }
}

/// The node name in a lease's `holderIdentity` (`NODE_UUID`, as the controller manager
/// writes it).
pub fn holder_node(identity: &str) -> Option<String> {
    let id = identity.trim().trim_matches('\'');
    let node = id.split('_').next().unwrap_or("").trim();
    (!node.is_empty()).then(|| node.to_string())
}

/// A client that trusts only the cluster CA, presents the admin certificate, reaches
/// [`API_NAME`] at `socket` and keeps no idle connection. (The client ignores the port of a
/// resolved name: URLs carry `socket`'s port, see [`readyz`].)
pub fn probe_client(
    creds: &AdminCredentials,
    socket: SocketAddr,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let ca = reqwest::Certificate::from_pem(creds.ca_pem.as_bytes())
        .map_err(|e| format!("the cluster CA does not load: {e}"))?;
    let mut pem = creds.cert_pem.clone().into_bytes();
    pem.extend_from_slice(creds.key_pem.expose().as_bytes());
    // Not the error's text: it could quote the key.
    let id = reqwest::Identity::from_pem(&pem)
        .map_err(|_| "the client certificate and key do not load".to_string())?;
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(id)
        .resolve(API_NAME, socket)
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("the probe client does not build: {e}"))
}

/// `GET https://kubernetes:PORT/readyz` (`PORT`: the probe socket's, the VIP's or its
/// tunnel's): `Ok` when it answers `200` with `ok`.
pub async fn readyz(c: &reqwest::Client, port: u16) -> Result<(), WriteError> {
    let url = format!("https://{API_NAME}:{port}/readyz");
    let r = c.get(&url).send().await.map_err(|e| {
        let m = format!("readyz: {}", error_chain(&e));
        if e.is_connect() {
            WriteError::not_sent(m)
        } else {
            WriteError::sent(m)
        }
    })?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    if status.as_u16() == 200 && body.trim() == "ok" {
        Ok(())
    } else {
        Err(WriteError::sent(format!(
            "readyz: HTTP {}: {}",
            status.as_u16(),
            body.lines().next().unwrap_or("").trim()
        )))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// One prober: `GET /readyz` through the VIP per "write".
#[derive(Debug)]
pub struct K8sProber {
    client: Option<reqwest::Client>,
    port: u16,
    vip: IpAddr,
    answered: Arc<Mutex<Vec<i64>>>,
}

#[async_trait::async_trait]
impl Writer for K8sProber {
    async fn write(&mut self, id: i64) -> Result<Option<IpAddr>, WriteError> {
        let Some(c) = &self.client else {
            return Err(WriteError::not_sent("no probe client (credentials unread)"));
        };
        readyz(c, self.port).await?;
        if let Ok(mut a) = self.answered.lock() {
            a.push(id);
        }
        Ok(Some(self.vip))
    }
}

#[async_trait::async_trait]
impl ServiceTarget for K8sService {
    fn name(&self) -> &'static str {
        "kubernetes"
    }
    fn members(&self) -> &[Member] {
        &self.t.members
    }
    async fn healthy(&self) -> Result<String, String> {
        let Some((on, nodes)) = self.nodes().await else {
            return Err("no master's API answers `kubectl get nodes`".into());
        };
        let not_ready: Vec<String> = self
            .t
            .members
            .iter()
            .filter_map(|m| match nodes.iter().find(|n| n.name == m.host.hostname) {
                Some(n) if n.ready => None,
                Some(n) => Some(format!("{} {}", n.name, n.status)),
                None => Some(format!("{} not registered", m.host.hostname)),
            })
            .collect();
        if !not_ready.is_empty() {
            return Err(format!("masters not Ready: {}", not_ready.join(", ")));
        }
        if let Some(p) = self.etcd_problem(on, &nodes).await {
            return Err(p);
        }
        let Some(holder) = self.lease_holder(&[on]).await else {
            return Err(format!("the {LEASE} lease has no holder"));
        };
        if !self.t.members.iter().any(|m| m.host.hostname == holder) {
            return Err(format!(
                "the {LEASE} lease is held by {holder}, not a master"
            ));
        }
        self.readyz()
            .await
            .map_err(|e| format!("the API through the VIP {}: {}", self.vip(), e.message))?;
        Ok(holder)
    }
    async fn leader(&self, excluding: &str) -> Option<String> {
        let survivors: Vec<&Member> = self
            .t
            .members
            .iter()
            .filter(|m| m.host.hostname != excluding)
            .collect();
        self.lease_holder(&survivors).await
    }
    async fn writable(&self, _m: &Member) -> Option<bool> {
        // Every API server serves writes; there is no single primary to count.
        None
    }
    async fn prepare(&self) -> Result<(), FaultError> {
        // A new run numbers its probes from 1 again.
        if let Ok(mut a) = self.answered.lock() {
            a.clear();
        }
        self.client().await?;
        self.readyz()
            .await
            .map_err(|e| self.err(format!("/readyz through the VIP: {}", e.message)))
    }
    fn writer(&self, _w: usize) -> Box<dyn Writer> {
        Box::new(K8sProber {
            client: self.client.get().cloned(),
            port: self.t.api_socket().port(),
            vip: self.t.vip,
            answered: self.answered.clone(),
        })
    }
    async fn read_vip(&self) -> Result<Vec<i64>, FaultError> {
        Ok(self.answered.lock().map(|a| a.clone()).unwrap_or_default())
    }
    async fn catch_up(&self, _m: &Member, _within: Duration) -> Option<f64> {
        None
    }
    async fn read_member(&self, _m: &Member) -> Result<Vec<i64>, FaultError> {
        // Probes store nothing on a member: what was answered is all there is.
        self.read_vip().await
    }
    async fn replicas_following(&self, leader: &str) -> u32 {
        match self.nodes().await {
            Some((_, nodes)) => self
                .t
                .members
                .iter()
                .filter(|m| m.host.hostname != leader)
                .filter(|m| nodes.iter().any(|n| n.name == m.host.hostname && n.ready))
                .count() as u32,
            None => 0,
        }
    }
    async fn drop_scratch(&self) -> Result<(), FaultError> {
        if let Ok(mut a) = self.answered.lock() {
            a.clear();
        }
        Ok(())
    }
    fn vip(&self) -> String {
        kbz_core::net::host_port(self.t.vip, self.t.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_holder_is_the_node_before_the_uuid() {
        assert_eq!(
            holder_node("k8s-m2_0f1e2d3c-aaaa-bbbb-cccc-111122223333").as_deref(),
            Some("k8s-m2")
        );
        assert_eq!(holder_node("'k8s-m1_x'\n").as_deref(), Some("k8s-m1"));
        assert_eq!(holder_node(""), None);
    }
}
