//! The MariaDB Galera side of the workload (module 8): a [`Writer`] that INSERTs unique ids
//! in autocommit through one address (the MariaDB VIP, where HAProxy sends every write to
//! one node), the read-back of the ids on the VIP and on each node (causal reads:
//! `wsrep_sync_wait = 1`), and [`GaleraService`], what healthy means (every node Synced in
//! one Primary component of the expected size with one state uuid) and who "leads" (the node
//! the VIP writes to, by its `wsrep_node_name`, the inventory hostname). The application
//! user of `[mariadb]` connects from the controller, which is on the cluster's subnet.

use crate::observe::Member;
use crate::service::ServiceTarget;
use crate::workload::{WriteError, Writer};
use crate::FaultError;
use kbz_core::Secret;
use mysql_async::prelude::Queryable;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The scratch table of the workload (in the application database; nothing else uses it).
pub const TABLE: &str = "kbz_faults_writes";

/// Where the writers go and how the nodes are asked.
#[derive(Debug, Clone)]
pub struct GaleraTarget {
    /// The Galera nodes (the `mariadb` hosts).
    pub members: Vec<Member>,
    /// The MariaDB VIP (HAProxy's one-writer front).
    pub vip: IpAddr,
    /// MariaDB's port on the VIP and on the nodes.
    pub port: u16,
    /// The application user (`[mariadb] app_user`).
    pub user: String,
    /// Its password (the `mariadb_app_password` secret).
    pub password: Secret,
    /// The application database (`[mariadb] app_database`).
    pub database: String,
    /// Bound on every connect and statement.
    pub timeout: Duration,
    /// Where connections really go (bastion tunnels); empty: directly.
    pub routes: kbz_core::net::Routes,
}

impl GaleraTarget {
    fn opts(&self, ip: IpAddr) -> mysql_async::Opts {
        let to = self.routes.resolve(ip, self.port);
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(to.ip().to_string())
            .tcp_port(to.port())
            .user(Some(self.user.clone()))
            .pass(Some(self.password.expose().to_string()))
            .db_name(Some(self.database.clone()))
            .prefer_socket(false)
            .into()
    }

    fn err(&self, ip: IpAddr, e: impl std::fmt::Display) -> FaultError {
        FaultError::Mariadb {
            addr: kbz_core::net::host_port(ip, self.port),
            reason: e.to_string(),
        }
    }

    /// A connection to the server at `ip` (the VIP or a node), bounded by the timeout.
    pub async fn connect(&self, ip: IpAddr) -> Result<mysql_async::Conn, FaultError> {
        match tokio::time::timeout(self.timeout, mysql_async::Conn::new(self.opts(ip))).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.err(ip, e)),
            Err(_) => Err(self.err(ip, "connect timed out")),
        }
    }

    /// Runs `sql` on `ip` and returns its rows as strings (NULL as empty), bounded by
    /// `within`.
    async fn rows(
        &self,
        ip: IpAddr,
        sql: &str,
        within: Duration,
    ) -> Result<Vec<Vec<String>>, FaultError> {
        let mut c = self.connect(ip).await?;
        let rows: Vec<mysql_async::Row> = tokio::time::timeout(within, c.query(sql))
            .await
            .map_err(|_| self.err(ip, format!("`{sql}` timed out")))?
            .map_err(|e| self.err(ip, e))?;
        let _ = c.disconnect().await;
        Ok(rows
            .into_iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.get_opt::<Option<String>, usize>(i)
                            .and_then(|v| v.ok())
                            .flatten()
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect())
    }

    /// The wsrep status of the node at `ip`: state comment, cluster status, size, state uuid.
    pub async fn status(&self, ip: IpAddr) -> Result<BTreeMap<String, String>, FaultError> {
        let rows = self
            .rows(
                ip,
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', \
                 'wsrep_cluster_status', 'wsrep_cluster_size', 'wsrep_cluster_state_uuid', 'wsrep_ready', \
                 'wsrep_incoming_addresses')",
                self.timeout,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match r.as_slice() {
                [k, v] => Some((k.to_lowercase(), v.clone())),
                _ => None,
            })
            .collect())
    }

    /// The `wsrep_node_name` (the inventory hostname) of the node the server at `ip` is.
    pub async fn node_name(&self, ip: IpAddr) -> Result<String, FaultError> {
        let rows = self
            .rows(ip, "SELECT @@wsrep_node_name", self.timeout)
            .await?;
        rows.into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| self.err(ip, "no wsrep_node_name"))
    }

    /// Every workload id on the server at `ip`, read after the node applied everything the
    /// cluster committed before the read (`wsrep_sync_wait = 1`).
    pub async fn read_ids(&self, ip: IpAddr) -> Result<Vec<i64>, FaultError> {
        let mut c = self.connect(ip).await?;
        let ids: Vec<i64> = tokio::time::timeout(Duration::from_secs(60), async {
            c.query_drop("SET SESSION wsrep_sync_wait = 1").await?;
            c.query(format!("SELECT id FROM {TABLE}")).await
        })
        .await
        .map_err(|_| self.err(ip, "the read-back timed out"))?
        .map_err(|e| self.err(ip, e))?;
        let _ = c.disconnect().await;
        Ok(ids)
    }

    /// Creates the scratch table anew through the VIP.
    pub async fn prepare(&self) -> Result<(), FaultError> {
        let mut c = self.connect(self.vip).await?;
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            c.query_drop(format!("DROP TABLE IF EXISTS {TABLE}"))
                .await?;
            c.query_drop(format!(
                "CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, writer INT NOT NULL, \
                 at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
            ))
            .await
        })
        .await;
        let _ = c.disconnect().await;
        r.map_err(|_| self.err(self.vip, "creating the scratch table timed out"))?
            .map_err(|e| self.err(self.vip, e))
    }

    /// Drops the scratch table through the VIP.
    pub async fn drop_table(&self) -> Result<(), FaultError> {
        let mut c = self.connect(self.vip).await?;
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            c.query_drop(format!("DROP TABLE IF EXISTS {TABLE}")),
        )
        .await;
        let _ = c.disconnect().await;
        r.map_err(|_| self.err(self.vip, "dropping the scratch table timed out"))?
            .map_err(|e| self.err(self.vip, e))
    }
}

/// One Galera writer: `INSERT INTO kbz_faults_writes (id, writer)` in autocommit through the
/// VIP; the commit's acknowledgement names the node by `@@wsrep_node_address`'s host part
/// when known. A new connection after every failure.
#[derive(Debug)]
pub struct GaleraWriter {
    t: GaleraTarget,
    w: usize,
    conn: Option<mysql_async::Conn>,
}

impl GaleraWriter {
    /// Writer number `w` (connects on its first write).
    pub fn new(t: &GaleraTarget, w: usize) -> GaleraWriter {
        GaleraWriter {
            t: t.clone(),
            w,
            conn: None,
        }
    }
}

#[async_trait::async_trait]
impl Writer for GaleraWriter {
    async fn write(&mut self, id: i64) -> Result<Option<IpAddr>, WriteError> {
        let mut c = match self.conn.take() {
            Some(c) => c,
            None => self
                .t
                .connect(self.t.vip)
                .await
                .map_err(|e| WriteError::not_sent(e.to_string()))?,
        };
        let r = tokio::time::timeout(
            self.t.timeout,
            c.exec_drop(
                format!("INSERT INTO {TABLE} (id, writer) VALUES (?, ?)"),
                (id, self.w as i64),
            ),
        )
        .await;
        match r {
            Ok(Ok(())) => {
                self.conn = Some(c);
                Ok(None)
            }
            // A deadlock (certification failure) or a broken connection after sending: the
            // commit may or may not have happened.
            Ok(Err(e)) => Err(WriteError::sent(e.to_string())),
            Err(_) => Err(WriteError::sent("INSERT timed out")),
        }
    }
}

/// MariaDB Galera behind its VIP.
#[derive(Debug, Clone)]
pub struct GaleraService {
    /// Nodes, VIP and credentials.
    pub t: GaleraTarget,
}

impl GaleraService {
    /// Healthy: every node answers Synced and ready, in a Primary component of every node
    /// with one state uuid; the node the VIP writes to, by name.
    async fn check(&self) -> Result<String, String> {
        let want = self.t.members.len().to_string();
        let mut uuid: Option<String> = None;
        for m in &self.t.members {
            let s = self
                .t
                .status(m.host.ip)
                .await
                .map_err(|e| format!("{}: {e}", m.host.hostname))?;
            let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
            if get("wsrep_local_state_comment") != "Synced"
                || get("wsrep_cluster_status") != "Primary"
                || get("wsrep_ready") != "ON"
            {
                return Err(format!(
                    "{} is {} in a {} component (ready {})",
                    m.host.hostname,
                    get("wsrep_local_state_comment"),
                    get("wsrep_cluster_status"),
                    get("wsrep_ready")
                ));
            }
            if get("wsrep_cluster_size") != want {
                return Err(format!(
                    "{} sees a cluster of {} node(s), not {want}",
                    m.host.hostname,
                    get("wsrep_cluster_size")
                ));
            }
            let u = get("wsrep_cluster_state_uuid").to_string();
            match &uuid {
                Some(first) if *first != u => {
                    return Err(format!(
                        "{} has state uuid {u}, another node {first}",
                        m.host.hostname
                    ))
                }
                _ => uuid = Some(u),
            }
        }
        self.t
            .node_name(self.t.vip)
            .await
            .map_err(|e| format!("the VIP: {e}"))
    }
}

#[async_trait::async_trait]
impl ServiceTarget for GaleraService {
    fn name(&self) -> &'static str {
        "mariadb"
    }
    fn members(&self) -> &[Member] {
        &self.t.members
    }
    async fn healthy(&self) -> Result<String, String> {
        self.check().await
    }
    async fn leader(&self, excluding: &str) -> Option<String> {
        // The node HAProxy sends writes to now; not the excluded (faulted) one.
        let name = self.t.node_name(self.t.vip).await.ok()?;
        (name != excluding).then_some(name)
    }
    async fn writable(&self, m: &Member) -> Option<bool> {
        // Every node of a Primary component takes writes (multi-master); HAProxy makes one of
        // them the writer. Two writers at once means two Primary components (split brain):
        // so a node counts as writable only when it is its own component's writer, the
        // first node in inventory order among the component's members.
        let s = self.t.status(m.host.ip).await.ok()?;
        let primary = s.get("wsrep_ready").map(String::as_str) == Some("ON")
            && s.get("wsrep_cluster_status").map(String::as_str) == Some("Primary");
        if !primary {
            return Some(false);
        }
        let addrs = s
            .get("wsrep_incoming_addresses")
            .map(String::as_str)
            .unwrap_or("");
        Some(component_writer(&self.t.members, addrs).as_deref() == Some(&m.host.hostname))
    }
    async fn prepare(&self) -> Result<(), FaultError> {
        self.t.prepare().await
    }
    fn writer(&self, w: usize) -> Box<dyn Writer> {
        Box::new(GaleraWriter::new(&self.t, w))
    }
    async fn read_vip(&self) -> Result<Vec<i64>, FaultError> {
        self.t.read_ids(self.t.vip).await
    }
    async fn catch_up(&self, m: &Member, within: Duration) -> Option<f64> {
        // Caught up: the node is Synced and its copy holds as many rows as the VIP's.
        let want = self.t.read_ids(self.t.vip).await.ok()?.len();
        let since = Instant::now();
        while since.elapsed() < within {
            let synced = self
                .t
                .status(m.host.ip)
                .await
                .ok()
                .and_then(|s| s.get("wsrep_local_state_comment").cloned())
                .is_some_and(|c| c == "Synced");
            if synced {
                if let Ok(have) = self.t.read_ids(m.host.ip).await {
                    if have.len() >= want {
                        return Some(since.elapsed().as_secs_f64());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }
    async fn read_member(&self, m: &Member) -> Result<Vec<i64>, FaultError> {
        self.t.read_ids(m.host.ip).await
    }
    async fn replicas_following(&self, leader: &str) -> u32 {
        // Every other node Synced in the writer's Primary component.
        let mut n = 0;
        for m in &self.t.members {
            if m.host.hostname == leader {
                continue;
            }
            if let Ok(s) = self.t.status(m.host.ip).await {
                if s.get("wsrep_local_state_comment").map(String::as_str) == Some("Synced")
                    && s.get("wsrep_cluster_status").map(String::as_str) == Some("Primary")
                {
                    n += 1;
                }
            }
        }
        n
    }
    async fn drop_scratch(&self) -> Result<(), FaultError> {
        self.t.drop_table().await
    }
    fn vip(&self) -> String {
        kbz_core::net::host_port(self.t.vip, self.t.port)
    }
}

/// The writer of a Primary component whose members' client addresses are `incoming` (the
/// node's `wsrep_incoming_addresses`, `ip:port` comma-separated): the first of `members`
/// (inventory order, HAProxy's order) among them.
fn component_writer(members: &[Member], incoming: &str) -> Option<String> {
    let ips: Vec<&str> = incoming
        .split(',')
        .filter_map(|a| {
            a.trim()
                .rsplit_once(':')
                .map(|(ip, _)| ip.trim_matches(['[', ']']))
        })
        .collect();
    members
        .iter()
        .find(|m| ips.contains(&m.host.ip.to_string().as_str()))
        .map(|m| m.host.hostname.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::{Host, Role};

    fn members() -> Vec<Member> {
        (1..=3)
            .map(|i| Member {
                host: Host::new(
                    &format!("db{i}"),
                    format!("10.0.0.{i}").parse().expect("ip"),
                    &[Role::Mariadb],
                ),
                exec: std::sync::Arc::new(kbz_testkit::FakeHost::debian(&format!("db{i}"))),
            })
            .collect()
    }

    #[test]
    fn one_writer_per_primary_component_in_inventory_order() {
        let m = members();
        // One component of all three: db1 writes.
        assert_eq!(
            component_writer(&m, "10.0.0.2:3306,10.0.0.1:3306,10.0.0.3:3306").as_deref(),
            Some("db1")
        );
        // db1 gone: db2, HAProxy's next backup.
        assert_eq!(
            component_writer(&m, "10.0.0.3:3306,10.0.0.2:3306").as_deref(),
            Some("db2")
        );
        // A split (two components) gives two writers, one per component.
        assert_eq!(
            component_writer(&m, "10.0.0.1:3306").as_deref(),
            Some("db1")
        );
        assert_eq!(
            component_writer(&m, "10.0.0.2:3306,10.0.0.3:3306").as_deref(),
            Some("db2")
        );
        // Nothing known.
        assert_eq!(component_writer(&m, ""), None);
    }
}
