//! etcd health for kbz-health, judged from each member's batched answer: the member itself
//! (`endpoint health` and `endpoint status -w json` against its own client URL), then the
//! cluster: quorum (a majority healthy) and exactly one leader all members agree on.

use kbz_core::health::{HealthCheck, HealthRaw, HealthStatus, Probe, CLUSTER};
use kbz_core::{Context, Host};
use kbz_errors::Code;
use serde::Deserialize;

use crate::{parse_endpoint_health, Etcd};

/// The probes: health and status of the local member only (the cluster view is built on
/// the controller from every member's answer).
pub fn probes(ctx: &Context, host: &Host) -> Vec<Probe> {
    let Some(me) = Etcd::expected(ctx)
        .into_iter()
        .find(|e| e.name == host.hostname)
    else {
        return Vec::new();
    };
    let ctl = |args: &str| {
        format!(
            "ETCDCTL_API=3 timeout 15 etcdctl --endpoints={}{} --dial-timeout=2s --command-timeout=5s {args}",
            me.client_url,
            crate::client_flags(ctx.config.security.tls)
        )
    };
    vec![
        Probe::new("health", ctl("endpoint health")),
        Probe::new("status", ctl("endpoint status -w json")),
    ]
}

/// What `endpoint status -w json` says of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    /// This member's id.
    pub member_id: u64,
    /// The id of the leader it follows (0: none).
    pub leader: u64,
    /// Raft term.
    pub raft_term: u64,
}

#[derive(Deserialize)]
struct StatusEntry {
    #[serde(rename = "Status")]
    status: StatusBody,
}

#[derive(Deserialize)]
struct StatusBody {
    header: StatusHeader,
    #[serde(default)]
    leader: u64,
}

#[derive(Deserialize)]
struct StatusHeader {
    member_id: u64,
    #[serde(default)]
    raft_term: u64,
}

/// Parses `etcdctl endpoint status -w json` (one endpoint).
pub fn parse_status(text: &str) -> Result<MemberStatus, String> {
    let start = text.find('[').ok_or_else(|| first_line(text))?;
    let entries: Vec<StatusEntry> = serde_json::from_str(text[start..].trim())
        .map_err(|e| format!("{e}: {}", first_line(text)))?;
    let e = entries
        .into_iter()
        .next()
        .ok_or_else(|| "no endpoint in the status".to_string())?;
    Ok(MemberStatus {
        member_id: e.status.header.member_id,
        leader: e.status.leader,
        raft_term: e.status.header.raft_term,
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("no output")
        .trim()
        .to_string()
}

const FIX_MEMBER: &str = "`systemctl status etcd` and `journalctl -u etcd` on the host; a member that lost its data dir must be removed and re-added (`etcdctl member remove` / `member add`)";

/// Member rows (degraded when not healthy), quorum and leader rows (down when lost).
pub fn checks(ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let expected = Etcd::expected(ctx);
    let mut out = Vec::new();
    let mut healthy = Vec::new();
    let mut statuses: Vec<(String, MemberStatus)> = Vec::new();
    for m in &expected {
        let answer = raw.get(&m.name, "health").and_then(|h| {
            let s = raw.get(&m.name, "status")?;
            Ok((h, s))
        });
        let (ok, detail) = match answer {
            Err(reason) => (false, format!("not asked: {reason}")),
            Ok((h, s)) => {
                let eh = parse_endpoint_health(&h.text);
                if let Ok(st) = parse_status(&s.text) {
                    statuses.push((m.name.clone(), st));
                }
                if eh.healthy.contains(&m.client_url) {
                    (true, "healthy: committed a proposal".to_string())
                } else {
                    let why = eh
                        .unhealthy
                        .first()
                        .map(|(_, r)| r.clone())
                        .unwrap_or_else(|| first_line(&h.text));
                    (false, format!("unhealthy: {why}"))
                }
            }
        };
        if ok {
            healthy.push(m.name.clone());
        }
        out.push(HealthCheck::verdict(
            ok,
            HealthStatus::Degraded,
            "etcd",
            &m.name,
            "member healthy",
            detail,
            Code::E040,
            FIX_MEMBER,
        ));
    }
    let n = expected.len();
    let quorum = healthy.len() > n / 2;
    out.push(HealthCheck::verdict(
        quorum,
        HealthStatus::Down,
        "etcd",
        CLUSTER,
        "quorum",
        format!(
            "{} of {n} members healthy, quorum needs {}",
            healthy.len(),
            n / 2 + 1
        ),
        Code::E036,
        "start etcd on the members that are down (one at a time); never bootstrap a new cluster from a stale member",
    ));
    let mut leaders: Vec<u64> = statuses.iter().map(|(_, s)| s.leader).collect();
    leaders.sort_unstable();
    leaders.dedup();
    let name_of = |id: u64| {
        statuses
            .iter()
            .find(|(_, s)| s.member_id == id)
            .map(|(n, _)| n.clone())
    };
    let (ok, detail) = match leaders.as_slice() {
        [] => (false, "no member answered its status".to_string()),
        [0] => (
            false,
            "no leader: the members are electing (or lost quorum)".to_string(),
        ),
        [id] => match name_of(*id) {
            Some(name) => (
                true,
                format!(
                    "leader {name}, followed by all {} answering members",
                    statuses.len()
                ),
            ),
            None => (
                true,
                format!(
                    "leader {id:x} (not among the answering members), followed by all {}",
                    statuses.len()
                ),
            ),
        },
        many => (
            false,
            format!(
                "members follow different leaders: {}",
                many.iter()
                    .map(|id| name_of(*id).unwrap_or_else(|| format!("{id:x}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    out.push(HealthCheck::verdict(
        ok,
        HealthStatus::Down,
        "etcd",
        CLUSTER,
        "one leader",
        detail,
        Code::E036,
        "etcd elects a leader by itself once a majority of members talk to each other: check the network between them (ports 2379-2380)",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from etcdctl 3.4.23 on the lab (Debian 12): the leader's own status.
    const STATUS: &str = r#"[{"Endpoint":"http://10.77.0.11:2379","Status":{"header":{"cluster_id":17522425965082613452,"member_id":7783853482738715454,"revision":173,"raft_term":5},"version":"3.4.23","dbSize":61440,"leader":7783853482738715454,"raftIndex":196,"raftTerm":5,"raftAppliedIndex":196,"dbSizeInUse":53248}}]"#;

    #[test]
    fn parses_member_and_leader_ids() {
        let s = parse_status(STATUS).expect("status");
        assert_eq!(s.member_id, 7783853482738715454);
        assert_eq!(s.leader, s.member_id);
        assert_eq!(s.raft_term, 5);
        let e = parse_status("Error: context deadline exceeded\n").expect_err("no json");
        assert!(e.contains("context deadline exceeded"), "{e}");
    }
}
