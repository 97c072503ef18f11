//! What the cluster looks like right now, asked of the members through their executors: the
//! Patroni member list (kbz-postgres parses it), the primary's replication rows, the etcd
//! leader (kbz-etcd reads it). The components own the knowledge; this module only asks.

use kbz_core::{Cmd, Executor, Host};
use kbz_postgres::{MemberRow, ReplicationRow};
use std::sync::Arc;
use std::time::Duration;

/// One member of the fleet with its transport.
#[derive(Debug, Clone)]
pub struct Member {
    /// The inventory host.
    pub host: Host,
    /// Its executor.
    pub exec: Arc<dyn Executor>,
}

const PROBE: Duration = Duration::from_secs(6);

async fn stdout(m: &Member, script: &str) -> Option<String> {
    let out = m.exec.run(&Cmd::new(script).timeout(PROBE)).await.ok()?;
    out.success().then(|| out.stdout_str())
}

/// Patroni's member list as the first of `members` that answers sees it.
pub async fn patroni_members(members: &[&Member]) -> Option<(String, Vec<MemberRow>)> {
    for m in members {
        let script = kbz_postgres::cluster_script(&kbz_postgres::Postgres::rest_url(&m.host));
        if let Some(rows) = stdout(m, &script)
            .await
            .and_then(|o| kbz_postgres::parse_cluster(&o).ok())
        {
            return Some((m.host.hostname.clone(), rows));
        }
    }
    None
}

/// The running leader in a member list.
pub fn leader(rows: &[MemberRow]) -> Option<&MemberRow> {
    rows.iter()
        .find(|r| r.role == "Leader" && r.state == "running")
}

/// The primary's `pg_stat_replication`, asked on `leader` over its local socket.
pub async fn replication(leader: &Member) -> Option<Vec<ReplicationRow>> {
    let script = kbz_postgres::psql_script(kbz_postgres::REPLICATION_QUERY);
    stdout(leader, &script)
        .await
        .map(|o| kbz_postgres::parse_replication(&o))
}

/// The etcd member that is the Raft leader, asking each member about itself.
pub async fn etcd_leader(members: &[Member]) -> Option<String> {
    for m in members {
        let script = kbz_etcd::status_script(m.host.ip);
        if stdout(m, &script)
            .await
            .and_then(|o| kbz_etcd::is_leader(&o))
            == Some(true)
        {
            return Some(m.host.hostname.clone());
        }
    }
    None
}

/// The cluster is healthy: one running leader, every other member a replica whose WAL
/// receiver streams from it (the leader's `pg_stat_replication`), asked of the members in
/// order. Returns the leader's name, or what is wrong.
pub async fn healthy(members: &[Member]) -> Result<String, String> {
    let all: Vec<&Member> = members.iter().collect();
    let Some((_, rows)) = patroni_members(&all).await else {
        return Err("no member's Patroni REST API answers".into());
    };
    let Some(l) = leader(&rows) else {
        return Err(format!("no running leader: {}", describe(&rows)));
    };
    let Some(lm) = members.iter().find(|m| m.host.hostname == l.member) else {
        return Err(format!("leader {} is not a known member", l.member));
    };
    let Some(repl) = replication(lm).await else {
        return Err(format!("cannot read pg_stat_replication on {}", l.member));
    };
    let others: Vec<String> = members
        .iter()
        .map(|m| m.host.hostname.clone())
        .filter(|n| *n != l.member)
        .collect();
    kbz_postgres::check_replication(&repl, &others, false)?;
    Ok(l.member.clone())
}

/// `name role state` of each row, for messages.
pub fn describe(rows: &[MemberRow]) -> String {
    rows.iter()
        .map(|r| format!("{} {} {}", r.member, r.role, r.state))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lb hosts of `lbs` that hold `vip` right now (kbz-keepalived's probe, asked of every
/// host at once; a host that does not answer holds nothing).
pub async fn vip_holders(lbs: &[Member], vip: std::net::IpAddr) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for (i, m) in lbs.iter().cloned().enumerate() {
        set.spawn(async move {
            let held = stdout(&m, kbz_keepalived::observe_script())
                .await
                .map(|o| kbz_keepalived::parse_observation(&o))
                .is_some_and(|v| v.addresses.iter().any(|(_, a)| *a == vip));
            (i, m.host.hostname.clone(), held)
        });
    }
    let mut out = Vec::new();
    while let Some(Ok(r)) = set.join_next().await {
        out.push(r);
    }
    out.sort_by_key(|r| r.0);
    out.into_iter().filter(|r| r.2).map(|r| r.1).collect()
}
