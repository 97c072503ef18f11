//! Reading the cluster's state: parsers of Patroni's `GET /cluster` and of the primary's
//! `pg_stat_replication` (tested on captured output), the verdicts drawn from them, and the
//! read-only scripts that produce that output.

use serde::Deserialize;

/// One member of the cluster, with roles spelled as `patronictl list` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Member name (the inventory hostname).
    pub member: String,
    /// Address PostgreSQL is reached at.
    pub host: String,
    /// `Leader`, `Sync Standby`, `Replica` (`Standby Leader` in standby clusters).
    pub role: String,
    /// `running`, `streaming` (Patroni 3.0.4 and later), `starting`, `stopped`, ...
    pub state: String,
    /// Replication lag, or `unknown`; absent on the leader.
    pub lag_mb: Option<serde_json::Value>,
}

/// One row of the primary's `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    /// The standby's `application_name` (Patroni sets the member name).
    pub application_name: String,
    /// `streaming`, `catchup`, `startup`, `backup`.
    pub state: String,
    /// `sync`, `quorum`, `potential`, `async`.
    pub sync_state: String,
}

/// Parses `psql -XAtq` output of [`REPLICATION_QUERY`]: `name|state|sync_state` per line.
pub fn parse_replication(stdout: &str) -> Vec<ReplicationRow> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (a, s, y) = (f.next()?, f.next()?, f.next()?);
            (!a.is_empty()).then(|| ReplicationRow {
                application_name: a.to_string(),
                state: s.to_string(),
                sync_state: y.to_string(),
            })
        })
        .collect()
}

/// The query run on the primary.
pub const REPLICATION_QUERY: &str =
    "SELECT application_name, state, sync_state FROM pg_catalog.pg_stat_replication";

/// Runs `sql` as the `postgres` OS user over the local socket (peer authentication: no
/// password anywhere), without psqlrc, unaligned and tuples only.
pub fn psql_script(sql: &str) -> String {
    format!(
        "cd / && runuser -u postgres -- psql -XAtq -c {}",
        kbz_core::shell::quote(sql)
    )
}

/// The member list from a member's REST API (`GET /cluster`): the same view as
/// `patronictl list`, without starting a Python interpreter (about 0.8 s per call).
pub fn cluster_script(rest_url: &str) -> String {
    format!(
        "curl -fsS --max-time 3 {}",
        kbz_core::shell::quote(&format!("{rest_url}/cluster"))
    )
}

/// One member as `GET /cluster` reports it.
#[derive(Debug, Deserialize)]
struct ClusterMember {
    name: String,
    #[serde(default)]
    host: String,
    role: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    lag: Option<serde_json::Value>,
}

/// Parses `GET /cluster` into the rows `patronictl list` would print (roles spelled as
/// patronictl spells them, so the verdicts serve both).
pub fn parse_cluster(stdout: &str) -> Result<Vec<MemberRow>, String> {
    #[derive(Deserialize)]
    struct Cluster {
        members: Vec<ClusterMember>,
    }
    let c: Cluster = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "cannot read Patroni's /cluster answer: {e}: {}",
            first_line(stdout.trim())
        )
    })?;
    Ok(c.members
        .into_iter()
        .map(|m| MemberRow {
            member: m.name,
            host: m.host,
            role: match m.role.as_str() {
                "leader" => "Leader".into(),
                "sync_standby" => "Sync Standby".into(),
                "replica" => "Replica".into(),
                "standby_leader" => "Standby Leader".into(),
                other => other.to_string(),
            },
            state: m.state,
            lag_mb: m.lag,
        })
        .collect())
}

/// A member's readiness, printed on one line and given as the exit status (0 = ready): the
/// member runs as primary, or as a replica whose WAL receiver is streaming.
pub fn ready_script(rest_url: &str) -> String {
    let u = kbz_core::shell::quote(rest_url);
    format!(
        "c() {{ curl -fsS -o /dev/null --max-time 3 \"$1\" 2>/dev/null; }}\n\
         if c {u}/primary; then echo primary; exit 0; fi\n\
         if c {u}/replica; then\n\
         \x20 s=$({wal})\n\
         \x20 if [ \"$s\" = streaming ]; then echo 'replica streaming'; exit 0; fi\n\
         \x20 echo \"replica, WAL receiver ${{s:-not running}}\"; exit 1\n\
         fi\n\
         echo \"Patroni at {rest_url} reports neither a primary nor a running replica\"; exit 1\n",
        wal = psql_script("SELECT status FROM pg_catalog.pg_stat_wal_receiver") + " 2>/dev/null"
    )
}

/// A graceful switchover by Patroni itself (`patronictl switchover`, run as root on a
/// member: the REST credentials come from Patroni's config file, never the command line).
/// Exits 0 once Patroni accepted and carried it out.
pub fn switchover_script(leader: &str, candidate: &str) -> String {
    format!(
        "{ctl} -c {cfg} switchover --leader {l} --candidate {c} --force",
        ctl = crate::PATRONICTL_BIN,
        cfg = crate::CONFIG_PATH,
        l = kbz_core::shell::quote(leader),
        c = kbz_core::shell::quote(candidate),
    )
}

/// Judges the member list: exactly one running leader, every other expected member a running
/// replica, and (in synchronous mode) a synchronous standby. Returns the leader's name.
pub fn check_members(
    rows: &[MemberRow],
    expected: &[String],
    synchronous_mode: bool,
) -> Result<String, String> {
    let mut problems = Vec::new();
    for name in expected {
        if !rows.iter().any(|r| &r.member == name) {
            problems.push(format!("{name} is not a member"));
        }
    }
    for r in rows.iter().filter(|r| !expected.contains(&r.member)) {
        problems.push(format!(
            "{} is a member but not a postgres host of the inventory",
            r.member
        ));
    }
    let leaders: Vec<&MemberRow> = rows.iter().filter(|r| r.role == "Leader").collect();
    let leader = match leaders.as_slice() {
        [] => {
            problems.push("no member is the leader".into());
            None
        }
        [l] if l.state == "running" => Some(l.member.clone()),
        [l] => {
            problems.push(format!("leader {} is {}", l.member, l.state));
            None
        }
        many => {
            let names: Vec<&str> = many.iter().map(|l| l.member.as_str()).collect();
            problems.push(format!("more than one leader: {}", names.join(", ")));
            None
        }
    };
    for r in rows.iter().filter(|r| r.role != "Leader") {
        if !matches!(r.role.as_str(), "Replica" | "Sync Standby") {
            problems.push(format!("{} has role {}", r.member, r.role));
        } else if !matches!(r.state.as_str(), "running" | "streaming") {
            problems.push(format!("{} is {}", r.member, r.state));
        }
    }
    if synchronous_mode && expected.len() > 1 && !rows.iter().any(|r| r.role == "Sync Standby") {
        problems.push("synchronous mode is on but no member is a synchronous standby".into());
    }
    match leader {
        Some(l) if problems.is_empty() => Ok(l),
        _ => Err(problems.join("; ")),
    }
}

/// Judges the primary's replication: every replica streams, and in synchronous mode one of
/// them is synchronous.
pub fn check_replication(
    rows: &[ReplicationRow],
    replicas: &[String],
    synchronous_mode: bool,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for name in replicas {
        match rows.iter().find(|r| &r.application_name == name) {
            None => problems.push(format!("{name} is not connected to the primary")),
            Some(r) if r.state != "streaming" => {
                problems.push(format!("{name} is in state {}, not streaming", r.state))
            }
            Some(_) => {}
        }
    }
    if synchronous_mode
        && !replicas.is_empty()
        && !rows
            .iter()
            .any(|r| matches!(r.sync_state.as_str(), "sync" | "quorum"))
    {
        problems.push("no standby is synchronous".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn first_line(t: &str) -> &str {
    t.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Patroni 3.0.2 on the lab (`curl http://10.77.0.12:8008/cluster`).
    const CLUSTER: &str = r#"{"members": [{"name": "kbzlab-h1", "role": "leader", "state": "running", "api_url": "http://10.77.0.11:8008/patroni", "host": "10.77.0.11", "port": 5432, "timeline": 1}, {"name": "kbzlab-h2", "role": "sync_standby", "state": "running", "api_url": "http://10.77.0.12:8008/patroni", "host": "10.77.0.12", "port": 5432, "timeline": 1, "lag": 0}, {"name": "kbzlab-h3", "role": "replica", "state": "running", "api_url": "http://10.77.0.13:8008/patroni", "host": "10.77.0.13", "port": 5432, "timeline": 1, "lag": 0}]}"#;

    #[test]
    fn cluster_answer_reads_like_patronictl_list() {
        let rows = parse_cluster(CLUSTER).expect("parse");
        let roles: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.member.as_str(), r.role.as_str()))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("kbzlab-h1", "Leader"),
                ("kbzlab-h2", "Sync Standby"),
                ("kbzlab-h3", "Replica")
            ]
        );
        assert_eq!(rows[1].lag_mb, Some(serde_json::json!(0)));
        assert!(parse_cluster("<html>502</html>").is_err());
    }

    #[test]
    fn switchover_names_both_members_and_no_secret() {
        let s = switchover_script("kbzlab-h1", "kbzlab-h2");
        assert!(
            s.contains("--leader 'kbzlab-h1' --candidate 'kbzlab-h2' --force"),
            "{s}"
        );
        assert!(s.contains("-c /etc/patroni/config.yml"), "{s}");
        kbz_testkit::assert_valid_sh(&[s]);
    }

    fn names() -> Vec<String> {
        vec!["db1".into(), "db2".into(), "db3".into()]
    }

    // The shape of Patroni 3.0.2's `GET /cluster` just after bootstrap (captured on the lab,
    // names as in the example inventory).
    const LIST: &str = r#"{"members": [{"name": "db1", "role": "leader", "state": "running", "host": "127.0.0.21", "port": 5432, "timeline": 1}, {"name": "db2", "role": "sync_standby", "state": "running", "host": "127.0.0.22", "port": 5432, "timeline": 1, "lag": 0}, {"name": "db3", "role": "replica", "state": "running", "host": "127.0.0.23", "port": 5432, "timeline": 1, "lag": 0}]}"#;

    // Captured on the same cluster: `psql -XAtq` of REPLICATION_QUERY on the primary.
    const REPLICATION: &str = "db2|streaming|sync\ndb3|streaming|async\n";

    #[test]
    fn healthy_member_list() {
        let rows = parse_cluster(LIST).expect("parse");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].role, "Sync Standby");
        assert_eq!(check_members(&rows, &names(), true), Ok("db1".into()));
    }

    #[test]
    fn streaming_state_of_newer_patroni_is_accepted() {
        let text = LIST.replace(
            r#""replica", "state": "running""#,
            r#""replica", "state": "streaming""#,
        );
        let rows = parse_cluster(&text).expect("parse");
        assert_eq!(rows[2].state, "streaming");
        assert!(check_members(&rows, &names(), true).is_ok());
    }

    #[test]
    fn problems_are_named() {
        let text = r#"{"members": [{"name": "db1", "role": "replica", "state": "running", "host": "192.0.2.21", "timeline": 1, "lag": 0}, {"name": "db2", "role": "replica", "state": "starting", "host": "192.0.2.22", "lag": "unknown"}]}"#;
        let rows = parse_cluster(text).expect("parse");
        let e = check_members(&rows, &names(), true).expect_err("broken");
        assert!(e.contains("db3 is not a member"), "{e}");
        assert!(e.contains("no member is the leader"), "{e}");
        assert!(e.contains("db2 is starting"), "{e}");
        assert!(e.contains("no member is a synchronous standby"), "{e}");
        // Asynchronous clusters need no synchronous standby.
        let e = check_members(&rows, &names(), false).expect_err("broken");
        assert!(!e.contains("synchronous"), "{e}");
    }

    #[test]
    fn unreadable_output_is_an_error_with_the_text() {
        let e = parse_cluster("curl: (7) Failed to connect to 192.0.2.21 port 8008\n")
            .expect_err("no json");
        assert!(e.contains("Failed to connect"), "{e}");
        assert!(parse_cluster("").is_err());
    }

    #[test]
    fn replication_rows() {
        let rows = parse_replication(REPLICATION);
        assert_eq!(rows.len(), 2);
        let replicas = vec!["db2".to_string(), "db3".to_string()];
        assert_eq!(check_replication(&rows, &replicas, true), Ok(()));
        let rows = parse_replication("db2|catchup|async\n");
        let e = check_replication(&rows, &replicas, true).expect_err("not streaming");
        assert!(e.contains("db2 is in state catchup"), "{e}");
        assert!(e.contains("db3 is not connected"), "{e}");
        assert!(e.contains("no standby is synchronous"), "{e}");
        assert!(check_replication(
            &parse_replication("db2|streaming|async\ndb3|streaming|async\n"),
            &replicas,
            false
        )
        .is_ok());
    }

    #[test]
    fn readiness_script_needs_no_secret() {
        let s = ready_script("http://192.0.2.22:8008");
        assert!(s.contains("'http://192.0.2.22:8008'/primary"), "{s}");
        assert!(s.contains("pg_stat_wal_receiver"), "{s}");
        assert!(s.contains("runuser -u postgres -- psql"), "{s}");
        assert!(!s.to_lowercase().contains("password"), "{s}");
    }
}
