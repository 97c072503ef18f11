//! One service under test, behind one trait: what healthy means, who leads as the daemons
//! report it, who answers as a writable primary, the writers, the read-back of the VIP and of
//! a member's own copy, and the scratch data. [`PgService`] (Patroni, tokio-postgres) and
//! [`RedisService`] (Sentinel, the redis crate) implement it; the scenario runner only asks.

use crate::observe::{self, Member};
use crate::postgres::{self, PgTarget, PgWriter};
use crate::redis::{self as rd, RedisTarget, RedisWriter};
use crate::workload::Writer;
use crate::FaultError;
use std::time::{Duration, Instant};

/// A service a scenario writes to and measures.
#[async_trait::async_trait]
pub trait ServiceTarget: Send + Sync + std::fmt::Debug {
    /// `postgres` or `redis`.
    fn name(&self) -> &'static str;
    /// The hosts that run it.
    fn members(&self) -> &[Member];
    /// Healthy: one leader every member follows. The leader's hostname, or what is wrong.
    async fn healthy(&self) -> Result<String, String>;
    /// The leader as the daemons on the members other than `excluding` report it (all of
    /// them agreeing, for Sentinels).
    async fn leader(&self, excluding: &str) -> Option<String>;
    /// Whether `m` answers as a writable primary (`None`: it does not answer).
    async fn writable(&self, m: &Member) -> Option<bool>;
    /// Creates the scratch table or clears the scratch keys.
    async fn prepare(&self) -> Result<(), FaultError>;
    /// Writer number `w`, through the VIP.
    fn writer(&self, w: usize) -> Box<dyn Writer>;
    /// Every workload id present through the VIP.
    async fn read_vip(&self) -> Result<Vec<i64>, FaultError>;
    /// Waits up to `within` until `m` has everything the leader has; the seconds it took
    /// (`None`: it did not, or the service cannot tell).
    async fn catch_up(&self, m: &Member, within: Duration) -> Option<f64>;
    /// Every workload id in `m`'s own copy.
    async fn read_member(&self, m: &Member) -> Result<Vec<i64>, FaultError>;
    /// Replicas following `leader` at the end.
    async fn replicas_following(&self, leader: &str) -> u32;
    /// Drops the scratch table or deletes the scratch keys.
    async fn drop_scratch(&self) -> Result<(), FaultError>;
    /// The VIP address, for messages.
    fn vip(&self) -> String;
}

/// PostgreSQL under Patroni.
#[derive(Debug, Clone)]
pub struct PgService {
    /// The members.
    pub members: Vec<Member>,
    /// Connection through the VIP.
    pub pg: PgTarget,
}

#[async_trait::async_trait]
impl ServiceTarget for PgService {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn members(&self) -> &[Member] {
        &self.members
    }
    async fn healthy(&self) -> Result<String, String> {
        observe::healthy(&self.members).await
    }
    async fn leader(&self, excluding: &str) -> Option<String> {
        let survivors: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.host.hostname != excluding)
            .collect();
        let (_, rows) = observe::patroni_members(&survivors).await?;
        observe::leader(&rows).map(|l| l.member.clone())
    }
    async fn writable(&self, m: &Member) -> Option<bool> {
        postgres::is_primary(&self.pg.at(m.host.ip)).await
    }
    async fn prepare(&self) -> Result<(), FaultError> {
        postgres::prepare(&self.pg).await
    }
    fn writer(&self, w: usize) -> Box<dyn Writer> {
        Box::new(PgWriter::new(&self.pg, w))
    }
    async fn read_vip(&self) -> Result<Vec<i64>, FaultError> {
        postgres::read_ids(&self.pg).await
    }
    async fn catch_up(&self, m: &Member, within: Duration) -> Option<f64> {
        let lsn = postgres::primary_lsn(&self.pg).await.ok()?;
        let pt = self.pg.at(m.host.ip);
        let since = Instant::now();
        while since.elapsed() < within {
            if postgres::replayed(&pt, &lsn).await == Some(true) {
                return Some(since.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }
    async fn read_member(&self, m: &Member) -> Result<Vec<i64>, FaultError> {
        postgres::read_ids(&self.pg.at(m.host.ip)).await
    }
    async fn replicas_following(&self, leader: &str) -> u32 {
        let Some(l) = self.members.iter().find(|m| m.host.hostname == leader) else {
            return 0;
        };
        observe::replication(l)
            .await
            .map(|rows| rows.iter().filter(|x| x.state == "streaming").count() as u32)
            .unwrap_or(0)
    }
    async fn drop_scratch(&self) -> Result<(), FaultError> {
        postgres::drop_table(&self.pg).await
    }
    fn vip(&self) -> String {
        format!("{}:{}", self.pg.addr, self.pg.port)
    }
}

/// Redis under Sentinel.
#[derive(Debug, Clone)]
pub struct RedisService {
    /// Members, VIP and Sentinels.
    pub t: RedisTarget,
}

impl RedisService {
    fn hostname(&self, ip: std::net::IpAddr) -> String {
        self.t
            .member_at(ip)
            .map(|m| m.host.hostname.clone())
            .unwrap_or_else(|| ip.to_string())
    }
}

#[async_trait::async_trait]
impl ServiceTarget for RedisService {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn members(&self) -> &[Member] {
        &self.t.members
    }
    async fn healthy(&self) -> Result<String, String> {
        let sentinels: Vec<_> = self.t.members.iter().map(|m| self.t.sentinel(m)).collect();
        kbz_redis::client::healthy(&self.t.nodes(), &sentinels)
            .await
            .map(|ip| self.hostname(ip))
    }
    async fn leader(&self, excluding: &str) -> Option<String> {
        let sentinels: Vec<_> = self
            .t
            .members
            .iter()
            .filter(|m| m.host.hostname != excluding)
            .map(|m| self.t.sentinel(m))
            .collect();
        // Every surviving Sentinel must answer and name the same master.
        kbz_redis::client::agreed_master(&sentinels, sentinels.len())
            .await
            .ok()
            .map(|ip| self.hostname(ip))
    }
    async fn writable(&self, m: &Member) -> Option<bool> {
        kbz_redis::client::is_master(&self.t.node(m)).await
    }
    async fn prepare(&self) -> Result<(), FaultError> {
        rd::delete_scratch(&self.t.vip).await
    }
    fn writer(&self, w: usize) -> Box<dyn Writer> {
        Box::new(RedisWriter::new(&self.t.vip, w))
    }
    async fn read_vip(&self) -> Result<Vec<i64>, FaultError> {
        rd::read_ids(&self.t.vip).await
    }
    async fn catch_up(&self, m: &Member, within: Duration) -> Option<f64> {
        // Caught up: the member's replication link is up (a master always is) and its copy
        // has as many scratch keys as the VIP's.
        let want = rd::read_ids(&self.t.vip).await.ok()?.len();
        let node = self.t.node(m);
        let since = Instant::now();
        while since.elapsed() < within {
            if let Ok(have) = rd::read_ids(&node).await {
                if have.len() >= want {
                    return Some(since.elapsed().as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }
    async fn read_member(&self, m: &Member) -> Result<Vec<i64>, FaultError> {
        rd::read_ids(&self.t.node(m)).await
    }
    async fn replicas_following(&self, leader: &str) -> u32 {
        let Some(l) = self.t.members.iter().find(|m| m.host.hostname == leader) else {
            return 0;
        };
        kbz_redis::client::replication(&self.t.node(l))
            .await
            .map(|r| r.online_replicas.len() as u32)
            .unwrap_or(0)
    }
    async fn drop_scratch(&self) -> Result<(), FaultError> {
        rd::delete_scratch(&self.t.vip).await
    }
    fn vip(&self) -> String {
        self.t.vip.addr()
    }
}
