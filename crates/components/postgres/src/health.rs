//! PostgreSQL health for kbz-health, judged from each member's batched answer: Patroni's
//! `GET /patroni` (state, role, timeline) and, on the primary, two samples of
//! `pg_stat_replication` one second apart. A replica counts as streaming only when it
//! streams in both samples through the same walsender (a replica that keeps reconnecting,
//! as a diverged one does, never passes) with lag in bytes and seconds under the thresholds.

use kbz_core::health::{HealthCheck, HealthRaw, HealthStatus, Probe, CLUSTER};
use kbz_core::{shell, Context, Host};
use kbz_errors::Code;
use serde::Deserialize;

use crate::Postgres;

/// The sampled query: `name|state|sync_state|pid|lag_bytes|lag_seconds` per standby.
pub const SAMPLE_QUERY: &str = "SELECT application_name, state, sync_state, pid, COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), -1)::bigint, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0)::float8 FROM pg_catalog.pg_stat_replication";

/// Separates the two samples.
const SAMPLE_MARK: &str = "@@sample";

/// The probes: Patroni's view of this member, and (on the primary only) two samples of
/// `pg_stat_replication` one second apart, as the `postgres` OS user over the local socket.
pub fn probes(host: &Host) -> Vec<Probe> {
    vec![
        Probe::new(
            "patroni",
            format!(
                "curl -fsS --max-time 3 {}",
                shell::quote(&format!("{}/patroni", Postgres::rest_url(host)))
            ),
        ),
        Probe::new(
            "replication",
            format!(
                "q() {{ (cd / && timeout 10 runuser -u postgres -- psql -XAtq -c \"$1\"); }}\nif [ \"$(q 'SELECT pg_is_in_recovery()' 2>/dev/null)\" = f ]; then q {sql}; echo '{SAMPLE_MARK}'; sleep 1; q {sql}; else echo recovery; fi",
                sql = shell::quote(SAMPLE_QUERY)
            ),
        ),
    ]
}

/// What `GET /patroni` says of one member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PatroniStatus {
    /// `running`, `starting`, `stopped`, ...
    #[serde(default)]
    pub state: String,
    /// `master` / `primary`, `replica`, `standby_leader`.
    #[serde(default)]
    pub role: String,
    /// The timeline PostgreSQL is on.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// `streaming` on a replica that streams (Patroni 3.0.4 and later).
    #[serde(default)]
    pub replication_state: Option<String>,
}

impl PatroniStatus {
    /// The leader of the cluster.
    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "master" | "primary" | "standby_leader")
    }
}

/// Parses `GET /patroni`.
pub fn parse_patroni(text: &str) -> Result<PatroniStatus, String> {
    serde_json::from_str(text.trim()).map_err(|_| {
        format!(
            "Patroni REST did not answer: {}",
            text.lines().next().unwrap_or("no output").trim()
        )
    })
}

/// One standby in one sample of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq)]
pub struct Standby {
    /// `application_name` (Patroni sets the member name).
    pub name: String,
    /// `streaming`, `catchup`, `startup`, `backup`.
    pub state: String,
    /// `sync`, `quorum`, `potential`, `async`.
    pub sync_state: String,
    /// The walsender's pid (changes when the standby reconnects).
    pub pid: u32,
    /// Bytes of WAL the standby has not replayed yet (-1: unknown).
    pub lag_bytes: i64,
    /// Seconds of replay lag (0 when caught up and idle).
    pub lag_seconds: f64,
}

/// Parses the replication probe: `None` when the member is in recovery (a replica), else the
/// two samples (the second empty when the output was cut short).
pub fn parse_samples(text: &str) -> Option<(Vec<Standby>, Vec<Standby>)> {
    if text.trim() == "recovery" {
        return None;
    }
    let (a, b) = text.split_once(SAMPLE_MARK).unwrap_or((text, ""));
    Some((parse_sample(a), parse_sample(b)))
}

fn parse_sample(text: &str) -> Vec<Standby> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split('|').collect();
            if f.len() < 6 || f[0].is_empty() {
                return None;
            }
            Some(Standby {
                name: f[0].to_string(),
                state: f[1].to_string(),
                sync_state: f[2].to_string(),
                pid: f[3].parse().ok()?,
                lag_bytes: f[4].parse().unwrap_or(-1),
                lag_seconds: f[5].parse().unwrap_or(0.0),
            })
        })
        .collect()
}

/// Whether one replica streams stably and within the thresholds, a detail, and its row in
/// the second sample.
pub fn replica_verdict(
    name: &str,
    first: &[Standby],
    second: &[Standby],
    max_bytes: u64,
    max_seconds: f64,
) -> (bool, String, Option<Standby>) {
    let a = first.iter().find(|s| s.name == name);
    let b = second.iter().find(|s| s.name == name).cloned();
    let (ok, detail) = match (a, &b) {
        (None, None) => (
            false,
            "not connected to the primary (no walsender)".to_string(),
        ),
        (None, Some(_)) | (Some(_), None) => (
            false,
            "connection to the primary not stable: present in only one of two samples 1 s apart"
                .to_string(),
        ),
        (Some(a), Some(b)) if a.state != "streaming" || b.state != "streaming" => (
            false,
            format!("state {} then {} (not streaming)", a.state, b.state),
        ),
        (Some(a), Some(b)) if a.pid != b.pid => (
            false,
            format!(
                "reconnected between two samples 1 s apart (walsender {} then {})",
                a.pid, b.pid
            ),
        ),
        (Some(_), Some(b)) if b.lag_bytes < 0 => {
            (false, "streaming, replay position unknown".to_string())
        }
        (Some(a), Some(b)) if b.lag_bytes as u64 > max_bytes => (
            false,
            format!(
                "streaming, {} bytes behind (threshold {max_bytes}){}",
                b.lag_bytes,
                if b.lag_bytes > a.lag_bytes {
                    ", and growing"
                } else {
                    ""
                }
            ),
        ),
        (Some(_), Some(b)) if b.lag_seconds > max_seconds => (
            false,
            format!(
                "streaming, replay {:.1} s behind (threshold {max_seconds} s)",
                b.lag_seconds
            ),
        ),
        (Some(_), Some(b)) => (
            true,
            format!(
                "streaming ({}), {} bytes / {:.1} s behind",
                b.sync_state, b.lag_bytes, b.lag_seconds
            ),
        ),
    };
    (ok, detail, b)
}

const FIX_MEMBER: &str = "`systemctl status patroni` and `journalctl -u patroni` on the host; a replica that diverged after a failover is rebuilt with `patronictl reinit`";

/// Member rows and replica rows are degraded when they fail; the leader row is down.
pub fn checks(ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let cfg = &ctx.config.postgres;
    let members: Vec<String> = Postgres::members(ctx)
        .iter()
        .map(|h| h.hostname.clone())
        .collect();
    let mut out = Vec::new();
    let mut status: Vec<(String, PatroniStatus)> = Vec::new();
    for m in &members {
        let r = raw.get(m, "patroni").and_then(|o| parse_patroni(&o.text));
        let (ok, detail) = match &r {
            Ok(s) if s.state == "running" => (
                true,
                format!(
                    "{} running on timeline {}",
                    s.role,
                    s.timeline
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "?".into())
                ),
            ),
            Ok(s) => (false, format!("{} {}", s.role, s.state)),
            Err(e) => (false, e.clone()),
        };
        if let Ok(s) = r {
            status.push((m.clone(), s));
        }
        out.push(HealthCheck::verdict(
            ok,
            HealthStatus::Degraded,
            "postgres",
            m,
            "patroni member",
            detail,
            Code::E040,
            FIX_MEMBER,
        ));
    }
    let leaders: Vec<&(String, PatroniStatus)> =
        status.iter().filter(|(_, s)| s.is_leader()).collect();
    let leader = match leaders.as_slice() {
        [one] => Some(one),
        _ => None,
    };
    out.push(HealthCheck::verdict(
        leader.is_some(),
        HealthStatus::Down,
        "postgres",
        leader.map(|l| l.0.as_str()).unwrap_or(CLUSTER),
        "one leader",
        match leaders.as_slice() {
            [] => "no member is the leader: writes are refused".to_string(),
            [one] => format!("leader {}", one.0),
            many => format!(
                "{} members claim to lead at once: {}",
                many.len(),
                many.iter().map(|l| l.0.as_str()).collect::<Vec<_>>().join(", ")
            ),
        },
        Code::E038,
        "Patroni elects a leader when etcd has quorum: see `kbz-health --component etcd`, then `journalctl -u patroni` on the members",
    ));
    let Some((leader_name, leader_status)) = leader.map(|l| (&l.0, &l.1)) else {
        return out;
    };
    let samples = raw
        .get(leader_name, "replication")
        .ok()
        .and_then(|o| parse_samples(&o.text));
    let Some((first, second)) = samples else {
        out.push(HealthCheck::failing(
            HealthStatus::Degraded,
            "postgres",
            leader_name,
            "replication",
            "cannot read pg_stat_replication on the leader",
            Code::E038,
            FIX_MEMBER,
        ));
        return out;
    };
    for m in members.iter().filter(|m| *m != leader_name) {
        let (mut ok, mut detail, last) =
            replica_verdict(m, &first, &second, cfg.max_lag_bytes, cfg.max_lag_seconds);
        if let Some((_, s)) = status.iter().find(|(n, _)| n == m) {
            // Patroni 3.0 reports no timeline for a replica that has not replayed a
            // timeline switch yet; only a known, different timeline is a divergence.
            if s.timeline.is_some() && s.timeline != leader_status.timeline {
                ok = false;
                detail = format!(
                    "timeline {} while the leader is on {}: diverged ({detail})",
                    s.timeline
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "?".into()),
                    leader_status
                        .timeline
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "?".into()),
                );
            }
        }
        let mut c = HealthCheck::verdict(
            ok,
            HealthStatus::Degraded,
            "postgres",
            m,
            "replica streaming",
            detail,
            Code::E038,
            "a replica that does not stream holds no copy: `journalctl -u patroni` on it; after a failover a diverged old primary is rewound or rebuilt (`patronictl reinit`)",
        );
        if let Some(l) = last {
            c = c
                .metric("replication_lag_bytes", l.lag_bytes.max(0) as f64)
                .metric("replication_lag_seconds", l.lag_seconds);
        }
        out.push(c);
    }
    if cfg.synchronous_mode {
        let sync: Vec<&str> = second
            .iter()
            .filter(|s| {
                s.state == "streaming" && matches!(s.sync_state.as_str(), "sync" | "quorum")
            })
            .map(|s| s.name.as_str())
            .collect();
        out.push(HealthCheck::verdict(
            !sync.is_empty(),
            HealthStatus::Degraded,
            "postgres",
            leader_name,
            "synchronous standby",
            if sync.is_empty() {
                "synchronous mode is on but no standby is synchronous: commits are acknowledged without a second copy".to_string()
            } else {
                format!("synchronous standby {}", sync.join(", "))
            },
            Code::E038,
            "bring a replica back to streaming (the rows above); Patroni then makes it synchronous again",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(name: &str, state: &str, pid: u32, lag: i64) -> Standby {
        Standby {
            name: name.into(),
            state: state.into(),
            sync_state: "sync".into(),
            pid,
            lag_bytes: lag,
            lag_seconds: 0.0,
        }
    }

    #[test]
    fn samples_parse_and_replicas_answer_recovery() {
        let text = "db2|streaming|sync|4242|0|0\ndb3|streaming|async|4243|128|0.002\n@@sample\ndb2|streaming|sync|4242|0|0\n";
        let (a, b) = parse_samples(text).expect("primary");
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 1);
        assert_eq!(a[1].lag_bytes, 128);
        assert!((a[1].lag_seconds - 0.002).abs() < 1e-9);
        assert_eq!(parse_samples("recovery\n"), None);
    }

    #[test]
    fn only_a_stable_stream_within_thresholds_passes() {
        let good = [standby("db2", "streaming", 7, 100)];
        assert!(replica_verdict("db2", &good, &good, 1000, 30.0).0);
        // Reconnecting between samples, as a diverged replica does, fails.
        let again = [standby("db2", "streaming", 8, 100)];
        let v = replica_verdict("db2", &good, &again, 1000, 30.0);
        assert!(!v.0 && v.1.contains("reconnected"), "{}", v.1);
        // Catchup, missing, lag over the threshold.
        let catchup = [standby("db2", "catchup", 7, 100)];
        assert!(!replica_verdict("db2", &catchup, &good, 1000, 30.0).0);
        assert!(!replica_verdict("db2", &[], &good, 1000, 30.0).0);
        assert!(!replica_verdict("db2", &[], &[], 1000, 30.0).0);
        let far = [standby("db2", "streaming", 7, 5000)];
        let v = replica_verdict("db2", &good, &far, 1000, 30.0);
        assert!(!v.0 && v.1.contains("growing"), "{}", v.1);
    }

    /// Captured from Patroni 3.0.2 and PostgreSQL 15 on the lab (Debian 12).
    #[test]
    fn captured_patroni_answers_parse() {
        let primary = parse_patroni(include_str!("../fixtures/health/patroni-primary.json"))
            .expect("primary");
        assert!(primary.is_leader());
        assert_eq!(primary.timeline, Some(1));
        let replica = parse_patroni(include_str!("../fixtures/health/patroni-replica.json"))
            .expect("replica");
        assert!(!replica.is_leader() && replica.state == "running");
        let fresh = parse_patroni(include_str!(
            "../fixtures/health/patroni-replica-no-timeline.json"
        ))
        .expect("fresh");
        assert_eq!(fresh.timeline, None);
        let (a, _) = parse_samples(&format!(
            "{0}@@sample\n{0}",
            include_str!("../fixtures/health/pg_stat_replication.txt")
        ))
        .expect("primary samples");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].sync_state, "sync");
    }

    #[test]
    fn patroni_status_parses() {
        let s = parse_patroni(r#"{"state": "running", "postmaster_start_time": "2026-12-01 21:00:00+00:00", "role": "replica", "server_version": 150005, "xlog": {"received_location": 50331648, "replayed_location": 50331648, "replayed_timestamp": null, "paused": false}, "timeline": 2, "replication_state": "streaming", "dcs_last_seen": 1764622800, "database_system_identifier": "7443", "patroni": {"version": "3.0.2", "scope": "kbz"}}"#).expect("json");
        assert_eq!(s.timeline, Some(2));
        assert!(!s.is_leader());
        assert!(parse_patroni("curl: (7) Failed to connect").is_err());
    }
}
