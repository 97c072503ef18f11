//! The controller's own Redis and Sentinel client (the `redis` crate over TCP, short
//! timeouts), for tools that watch a running cluster from outside (kbz-failover): who the
//! master is as the Sentinels report it, whether they all agree, each node's replication
//! role, and the healthy-cluster rule (one agreed master, every replica linked to it, every
//! Sentinel passing CKQUORUM). The install path talks to the daemons through `redis-cli` on
//! the hosts instead (see [`crate::scripts`]).

use crate::observe::{self, NodeRole, Replication};
use crate::MASTER_NAME;
use kbz_core::net::Routes;
use kbz_core::Secret;
use std::net::IpAddr;
use std::time::Duration;

/// Why a Redis or Sentinel request failed.
#[derive(Debug, thiserror::Error)]
#[error("Redis at {addr}: {reason}")]
pub struct ClientError {
    /// `ip:port`.
    pub addr: String,
    /// What failed.
    pub reason: String,
}

/// One Redis server or Sentinel, with the default user's password.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// Port (6379 for Redis, 26379 for Sentinel on Debian).
    pub port: u16,
    /// The default user's password (never printed); empty: no AUTH.
    pub password: Secret,
    /// Connect and response timeout.
    pub timeout: Duration,
    /// Where connections to an address really go (a tunnel through the bastion); empty:
    /// directly. Messages and master names keep [`Endpoint::ip`].
    pub routes: Routes,
}

impl Endpoint {
    /// The same endpoint at another address, with the same routes.
    pub fn at(&self, ip: IpAddr) -> Endpoint {
        Endpoint { ip, ..self.clone() }
    }

    /// `ip:port`, for messages.
    pub fn addr(&self) -> String {
        std::net::SocketAddr::new(self.ip, self.port).to_string()
    }

    /// An error about this endpoint.
    pub fn err(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError {
            addr: self.addr(),
            reason: reason.to_string(),
        }
    }

    /// A multiplexed connection, authenticated, with this endpoint's timeouts.
    pub async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, ClientError> {
        let pass = self.password.expose();
        let to = self.routes.resolve(self.ip, self.port);
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(to.ip().to_string(), to.port()),
            redis: redis::RedisConnectionInfo {
                db: 0,
                username: None,
                password: (!pass.is_empty()).then(|| pass.to_string()),
                protocol: redis::ProtocolVersion::RESP2,
            },
        };
        let client = redis::Client::open(info).map_err(|e| self.err(e))?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        tokio::time::timeout(
            self.timeout + Duration::from_millis(500),
            client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        .map_err(|_| self.err("connect timed out"))?
        .map_err(|e| self.err(e))
    }

    /// One command on a fresh connection.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ClientError> {
        let mut c = self.connect().await?;
        tokio::time::timeout(
            self.timeout + Duration::from_millis(500),
            cmd.query_async::<T>(&mut c),
        )
        .await
        .map_err(|_| self.err("request timed out"))?
        .map_err(|e| self.err(e))
    }
}

/// `INFO replication` of a Redis node, parsed.
pub async fn replication(node: &Endpoint) -> Result<Replication, ClientError> {
    let text: String = node.query(redis::cmd("INFO").arg("replication")).await?;
    observe::parse_info_replication(&text).ok_or_else(|| {
        node.err(format!(
            "unexpected INFO replication: {}",
            first_line(&text)
        ))
    })
}

/// Whether a node answers as a writable master: `role:master` with at least
/// [`crate::MIN_REPLICAS_TO_WRITE`] replicas online (kbz's masters refuse writes without
/// them, NOREPLICAS: an old master back from a power cut is a master for a moment, before
/// Sentinel turns it into a replica, but takes no write); `None` when it does not answer.
pub async fn is_master(node: &Endpoint) -> Option<bool> {
    replication(node).await.ok().map(|r| {
        r.role == NodeRole::Master
            && r.online_replicas.len() >= crate::MIN_REPLICAS_TO_WRITE as usize
    })
}

/// The master one Sentinel names (`SENTINEL GET-MASTER-ADDR-BY-NAME kbz`); `None` when it
/// monitors no such master.
pub async fn sentinel_master(sentinel: &Endpoint) -> Result<Option<IpAddr>, ClientError> {
    let v: Option<Vec<String>> = sentinel
        .query(
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME),
        )
        .await?;
    match v.as_deref() {
        None | Some([]) => Ok(None),
        Some([ip, _port, ..]) => ip
            .parse()
            .map(Some)
            .map_err(|_| sentinel.err(format!("Sentinel names master {ip:?}, not an address"))),
        Some(other) => Err(sentinel.err(format!("unexpected answer {other:?}"))),
    }
}

/// `SENTINEL CKQUORUM kbz` passes on this Sentinel.
pub async fn ckquorum(sentinel: &Endpoint) -> Result<bool, ClientError> {
    let r: Result<String, ClientError> = sentinel
        .query(redis::cmd("SENTINEL").arg("CKQUORUM").arg(MASTER_NAME))
        .await;
    match r {
        Ok(s) => Ok(observe::ckquorum_ok(&s)),
        // A failing CKQUORUM is an error reply (NOQUORUM ...): an answer, not a failure.
        Err(e) if e.reason.contains("NOQUORUM") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The master every answering Sentinel of `sentinels` names, when they all agree and at
/// least `min_answers` answered; otherwise what they said.
pub async fn agreed_master(sentinels: &[Endpoint], min_answers: usize) -> Result<IpAddr, String> {
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in sentinels.iter().cloned().enumerate() {
        set.spawn(async move { (i, s.addr(), sentinel_master(&s).await) });
    }
    let mut answers = Vec::new();
    while let Some(Ok(a)) = set.join_next().await {
        answers.push(a);
    }
    answers.sort_by_key(|a| a.0);
    let mut named: Vec<(String, IpAddr)> = Vec::new();
    let mut notes = Vec::new();
    for (_, addr, a) in answers {
        match a {
            Ok(Some(ip)) => named.push((addr, ip)),
            Ok(None) => notes.push(format!("{addr} monitors no master {MASTER_NAME}")),
            Err(e) => notes.push(e.to_string()),
        }
    }
    let first = named.first().map(|(_, ip)| *ip);
    match first {
        Some(m) if named.iter().all(|(_, ip)| *ip == m) && named.len() >= min_answers.max(1) => {
            Ok(m)
        }
        _ => {
            let said: Vec<String> = named
                .iter()
                .map(|(a, ip)| format!("{a} names {ip}"))
                .chain(notes)
                .collect();
            Err(format!(
                "the Sentinels do not agree on one master: {}",
                said.join("; ")
            ))
        }
    }
}

/// The cluster is healthy: every Sentinel names the same master and passes CKQUORUM, the
/// master is one of `nodes` and reports every other node as an online replica, and every
/// other node is a replica of it with its link up. Returns the master's address.
pub async fn healthy(nodes: &[Endpoint], sentinels: &[Endpoint]) -> Result<IpAddr, String> {
    let master = agreed_master(sentinels, sentinels.len()).await?;
    let Some(m) = nodes.iter().find(|n| n.ip == master) else {
        return Err(format!(
            "the Sentinels name {master}, which is not a Redis member"
        ));
    };
    for s in sentinels {
        match ckquorum(s).await {
            Ok(true) => {}
            Ok(false) => return Err(format!("Sentinel {} fails CKQUORUM", s.addr())),
            Err(e) => return Err(e.to_string()),
        }
    }
    let mr = replication(m).await.map_err(|e| e.to_string())?;
    if mr.role != NodeRole::Master {
        return Err(format!(
            "{master} is named master by the Sentinels but is a replica"
        ));
    }
    for n in nodes.iter().filter(|n| n.ip != master) {
        let r = replication(n).await.map_err(|e| e.to_string())?;
        if r.role != NodeRole::Replica || r.master_host != Some(master) || !r.link_up {
            return Err(format!(
                "{} is not a linked replica of {master} (role {:?}, master {:?}, link up {})",
                n.addr(),
                r.role,
                r.master_host,
                r.link_up
            ));
        }
        if !mr.online_replicas.contains(&n.ip) {
            return Err(format!(
                "master {master} does not list {} as an online replica",
                n.ip
            ));
        }
    }
    Ok(master)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(120).collect()
}
