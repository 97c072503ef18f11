//! The Redis side of the workload: a [`Writer`] that SETs unique keys under the scratch
//! prefix through one address (the Redis VIP) with short timeouts and reconnects, the
//! read-back of the keys present on one server, and the removal of the scratch keys. Who the
//! master is and what healthy means come from kbz-redis ([`kbz_redis::client`]).

use crate::observe::Member;
use crate::workload::{WriteError, Writer};
use crate::FaultError;
use kbz_core::Secret;
use kbz_redis::client::Endpoint;
use std::net::IpAddr;
use std::time::Duration;

/// Every key the workload writes starts with this (and nothing else of the cluster does).
pub const PREFIX: &str = "kbz-faults:";

/// Where the writers go and how the members and Sentinels are asked.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// The Redis hosts.
    pub members: Vec<Member>,
    /// The address writes go to (the Redis VIP, port 6379) with the default user's password.
    pub vip: Endpoint,
    /// Redis port on the members.
    pub redis_port: u16,
    /// Sentinel port on the members.
    pub sentinel_port: u16,
    /// The Sentinels' password.
    pub sentinel_password: Secret,
}

impl RedisTarget {
    /// The Redis server on member `m`.
    pub fn node(&self, m: &Member) -> Endpoint {
        Endpoint {
            port: self.redis_port,
            ..self.vip.at(m.host.ip)
        }
    }

    /// Every member's Redis server.
    pub fn nodes(&self) -> Vec<Endpoint> {
        self.members.iter().map(|m| self.node(m)).collect()
    }

    /// The Sentinel on member `m`.
    pub fn sentinel(&self, m: &Member) -> Endpoint {
        Endpoint {
            port: self.sentinel_port,
            password: self.sentinel_password.clone(),
            ..self.vip.at(m.host.ip)
        }
    }

    /// The member at `ip`.
    pub fn member_at(&self, ip: IpAddr) -> Option<&Member> {
        self.members.iter().find(|m| m.host.ip == ip)
    }
}

/// The key of id `id`.
pub fn key(id: i64) -> String {
    format!("{PREFIX}{id}")
}

/// One Redis writer: `SET kbz-faults:<id> <writer>` through its endpoint; a new connection
/// after every failure.
#[derive(Debug)]
pub struct RedisWriter {
    at: Endpoint,
    w: usize,
    conn: Option<redis::aio::MultiplexedConnection>,
}

impl RedisWriter {
    /// Writer number `w` against `at` (connects on its first write).
    pub fn new(at: &Endpoint, w: usize) -> RedisWriter {
        RedisWriter {
            at: at.clone(),
            w,
            conn: None,
        }
    }
}

#[async_trait::async_trait]
impl Writer for RedisWriter {
    async fn write(&mut self, id: i64) -> Result<Option<IpAddr>, WriteError> {
        let mut c = match self.conn.take() {
            Some(c) => c,
            None => self
                .at
                .connect()
                .await
                .map_err(|e| WriteError::not_sent(e.reason))?,
        };
        let r = tokio::time::timeout(
            self.at.timeout,
            redis::cmd("SET")
                .arg(key(id))
                .arg(self.w)
                .query_async::<String>(&mut c),
        )
        .await;
        match r {
            Ok(Ok(ok)) if ok == "OK" => {
                self.conn = Some(c);
                Ok(None)
            }
            Ok(Ok(other)) => Err(WriteError::sent(format!("unexpected reply {other:?}"))),
            // READONLY, NOREPLICAS, a broken connection: the server may have applied it
            // (a connection broken after the write), so it counts as sent.
            Ok(Err(e)) => Err(WriteError::sent(e.to_string())),
            Err(_) => Err(WriteError::sent("SET timed out")),
        }
    }
}

/// Every workload id present on the server at `at` (a replica's own copy when `at` is a
/// replica), by `SCAN MATCH kbz-faults:*`.
pub async fn read_ids(at: &Endpoint) -> Result<Vec<i64>, FaultError> {
    let keys = scan(at).await?;
    Ok(keys
        .iter()
        .filter_map(|k| k.strip_prefix(PREFIX).and_then(|n| n.parse().ok()))
        .collect())
}

async fn scan(at: &Endpoint) -> Result<Vec<String>, FaultError> {
    let mut c = at.connect().await?;
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = tokio::time::timeout(
            Duration::from_secs(30),
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{PREFIX}*"))
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut c),
        )
        .await
        .map_err(|_| at.err("SCAN timed out"))?
        .map_err(|e| at.err(e))?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Removes every scratch key through `at` (the VIP, i.e. the master).
pub async fn delete_scratch(at: &Endpoint) -> Result<(), FaultError> {
    let keys = scan(at).await?;
    let mut c = at.connect().await?;
    for chunk in keys.chunks(500) {
        tokio::time::timeout(
            Duration::from_secs(30),
            redis::cmd("DEL").arg(chunk).query_async::<i64>(&mut c),
        )
        .await
        .map_err(|_| at.err("DEL timed out"))?
        .map_err(|e| at.err(e))?;
    }
    Ok(())
}
