//! What kbz sees of a Galera cluster and what it decides from it: the parser of the gather
//! script's output and the pure decisions (who bootstraps, which node the full-cluster
//! recovery starts from). Tested on captured output.

use kbz_errors::Code;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Galera's saved state (`grastate.dat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraState {
    /// The cluster's state uuid this node last belonged to.
    pub uuid: String,
    /// The last committed seqno written at a clean shutdown; -1 after a crash.
    pub seqno: i64,
    /// `safe_to_bootstrap: 1`: this node left the cluster last, cleanly.
    pub safe_to_bootstrap: bool,
}

/// The wsrep status of a running server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wsrep {
    /// `@@wsrep_on`.
    pub on: bool,
    /// `wsrep_local_state` (4 = Synced).
    pub local_state: u32,
    /// `wsrep_local_state_comment` (`Synced`, `Donor/Desynced`, `Joining`...).
    pub state_comment: String,
    /// `wsrep_cluster_size`.
    pub cluster_size: usize,
    /// `wsrep_cluster_status` (`Primary`, `non-Primary`, `Disconnected`).
    pub cluster_status: String,
    /// `wsrep_cluster_state_uuid`.
    pub state_uuid: String,
    /// `wsrep_last_committed`.
    pub last_committed: i64,
}

impl Wsrep {
    /// Synced and part of the Primary component.
    pub fn synced_primary(&self) -> bool {
        self.on && self.local_state == 4 && self.cluster_status == "Primary"
    }
}

/// Everything seen on one node in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Inventory hostname.
    pub host: String,
    /// Inventory address.
    pub ip: IpAddr,
    /// The unit's state (`active`, `activating`, `inactive`, `failed`, `unknown`).
    pub state: String,
    /// grastate.dat, when the node ever ran with Galera.
    pub grastate: Option<GraState>,
    /// The wsrep status, when the server is active and answered.
    pub wsrep: Option<Wsrep>,
    /// The server's answer when it is active but the status query failed.
    pub error: Option<String>,
    /// kbz's config file is newer than the running server.
    pub stale_config: bool,
}

impl NodeView {
    /// The server process runs (whatever its Galera state).
    pub fn running(&self) -> bool {
        self.state == "active"
    }

    /// Starting or stopping: the state may change by itself.
    pub fn transient(&self) -> bool {
        matches!(
            self.state.as_str(),
            "activating" | "deactivating" | "reloading"
        )
    }

    /// Synced in the Primary component.
    pub fn synced_primary(&self) -> bool {
        self.running() && self.wsrep.as_ref().is_some_and(Wsrep::synced_primary)
    }

    /// Running in a Primary component (Synced or not yet).
    pub fn in_primary(&self) -> bool {
        self.running()
            && self
                .wsrep
                .as_ref()
                .is_some_and(|w| w.on && w.cluster_status == "Primary")
    }
}

/// Parses the gather script's output.
pub fn parse_gather(host: &str, ip: IpAddr, out: &str) -> NodeView {
    let mut kv: BTreeMap<String, String> = BTreeMap::new();
    let mut other = Vec::new();
    for line in out.lines() {
        let l = line.trim_end_matches('\r');
        if l == "@@ end" {
            break;
        }
        match l.split_once('=') {
            Some((k, v)) if !k.contains(' ') => {
                kv.insert(k.to_string(), v.trim().to_string());
            }
            _ if !l.trim().is_empty() => other.push(l.trim().to_string()),
            _ => {}
        }
    }
    let get = |k: &str| kv.get(k).map(String::as_str);
    let grastate = get("gra_uuid").map(|u| GraState {
        uuid: u.to_string(),
        seqno: get("gra_seqno").and_then(|s| s.parse().ok()).unwrap_or(-1),
        safe_to_bootstrap: get("gra_safe") == Some("1"),
    });
    let state = get("state").unwrap_or("unknown").to_string();
    let wsrep = get("status_wsrep_on").map(|on| Wsrep {
        on: on == "1" || on.eq_ignore_ascii_case("on"),
        local_state: get("status_wsrep_local_state")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        state_comment: get("status_wsrep_local_state_comment")
            .unwrap_or("")
            .to_string(),
        cluster_size: get("status_wsrep_cluster_size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        cluster_status: get("status_wsrep_cluster_status").unwrap_or("").to_string(),
        state_uuid: get("status_wsrep_cluster_state_uuid")
            .unwrap_or("")
            .to_string(),
        last_committed: get("status_wsrep_last_committed")
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1),
    });
    let error = (state == "active" && wsrep.is_none()).then(|| {
        other
            .first()
            .map(|s| s.chars().take(200).collect())
            .unwrap_or_else(|| "no answer".into())
    });
    NodeView {
        host: host.into(),
        ip,
        state,
        grastate,
        wsrep,
        error,
        stale_config: get("stale_config") == Some("1"),
    }
}

/// Parses the recover script's `position=UUID:SEQNO`.
pub fn parse_position(out: &str) -> Option<(String, i64)> {
    let p = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("position="))?;
    let (uuid, seqno) = p.rsplit_once(':')?;
    Some((uuid.to_string(), seqno.trim().parse().ok()?))
}

/// A node's recovered position, for the choice of the node a full-cluster recovery starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Inventory hostname.
    pub host: String,
    /// The cluster state uuid of its data.
    pub uuid: String,
    /// Its last committed seqno (grastate.dat, or recovered from InnoDB when that says -1).
    pub seqno: i64,
    /// grastate.dat says safe_to_bootstrap: 1.
    pub safe_to_bootstrap: bool,
}

/// Why no node can be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The E-code.
    pub code: Code,
    /// What is wrong.
    pub reason: String,
}

/// The node a full-cluster recovery bootstraps from: the highest seqno (the node that has
/// every committed transaction); on a tie the one marked safe to bootstrap, then inventory
/// order. Refused when the nodes' data belong to different clusters (uuid) or no seqno is
/// known. `candidates` are in inventory order.
pub fn recovery_choice(candidates: &[Candidate]) -> Result<&Candidate, Refusal> {
    let uuids: std::collections::BTreeSet<&str> =
        candidates.iter().map(|c| c.uuid.as_str()).collect();
    if uuids.len() > 1 {
        return Err(Refusal {
            code: Code::E036,
            reason: format!(
                "the stopped nodes hold data of different clusters ({}); kbz does not choose \
                 between histories",
                candidates
                    .iter()
                    .map(|c| format!("{} {}:{}", c.host, c.uuid, c.seqno))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let best = candidates
        .iter()
        .enumerate()
        .max_by_key(|(i, c)| (c.seqno, c.safe_to_bootstrap, std::cmp::Reverse(*i)))
        .map(|(_, c)| c);
    match best {
        Some(c) if c.seqno >= 0 => Ok(c),
        _ => Err(Refusal {
            code: Code::E036,
            reason: "no stopped node has a known position (seqno); kbz cannot tell which holds \
                     the last commits"
                .into(),
        }),
    }
}

/// What the cluster step must do first, from every node's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A Primary component runs on these nodes (hostnames): join the others to it.
    Running(Vec<String>),
    /// No node ever ran Galera: bootstrap the first inventory host.
    Fresh(String),
    /// Every node is down and some hold Galera data: the full-cluster recovery.
    AllDown,
}

/// Decides how the cluster step starts. `Err` when a node answers wrongly or nodes run
/// without a Primary component (a partition or a quorum loss that Galera may still resolve;
/// kbz does not force it).
pub fn decide(views: &[NodeView]) -> Result<Start, Refusal> {
    if let Some(v) = views.iter().find(|v| v.running() && v.wsrep.is_none()) {
        return Err(Refusal {
            code: Code::E040,
            reason: format!(
                "{} runs MariaDB but its status query failed: {}",
                v.host,
                v.error.as_deref().unwrap_or("no answer")
            ),
        });
    }
    if let Some(v) = views
        .iter()
        .find(|v| v.wsrep.as_ref().is_some_and(|w| !w.on))
    {
        return Err(Refusal {
            code: Code::E035,
            reason: format!(
                "{} runs MariaDB without Galera (wsrep_on is OFF): it did not load {}",
                v.host,
                crate::layout::GALERA_CNF
            ),
        });
    }
    let primary: Vec<&NodeView> = views.iter().filter(|v| v.in_primary()).collect();
    if !primary.is_empty() {
        let uuids: std::collections::BTreeSet<&str> = primary
            .iter()
            .filter_map(|v| v.wsrep.as_ref().map(|w| w.state_uuid.as_str()))
            .collect();
        if uuids.len() > 1 {
            return Err(Refusal {
                code: Code::E036,
                reason: format!(
                    "two Primary components run ({}): a split brain kbz does not resolve",
                    primary
                        .iter()
                        .map(|v| format!(
                            "{} {}",
                            v.host,
                            v.wsrep
                                .as_ref()
                                .map(|w| w.state_uuid.as_str())
                                .unwrap_or("")
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        return Ok(Start::Running(
            primary.iter().map(|v| v.host.clone()).collect(),
        ));
    }
    let running: Vec<&NodeView> = views.iter().filter(|v| v.running()).collect();
    if !running.is_empty() {
        return Err(Refusal {
            code: Code::E036,
            reason: format!(
                "MariaDB runs on {} but no node is in a Primary component ({}): quorum lost. \
                 kbz recovers a cluster by itself only when every node is down",
                running
                    .iter()
                    .map(|v| v.host.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                running
                    .iter()
                    .map(|v| format!(
                        "{}: {}",
                        v.host,
                        v.wsrep
                            .as_ref()
                            .map(|w| w.cluster_status.as_str())
                            .unwrap_or("?")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if views.iter().all(|v| v.grastate.is_none()) {
        return match views.first() {
            Some(v) => Ok(Start::Fresh(v.host.clone())),
            None => Err(Refusal {
                code: Code::E035,
                reason: "no MariaDB host".into(),
            }),
        };
    }
    Ok(Start::AllDown)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = "state=active\ngra_uuid=9d71433d-ee9d-11f1-b8a3-b77be922693c\ngra_seqno=-1\ngra_safe=0\nstatus_wsrep_local_state=4\nstatus_wsrep_local_state_comment=Synced\nstatus_wsrep_cluster_size=3\nstatus_wsrep_cluster_status=Primary\nstatus_wsrep_cluster_state_uuid=9d71433d-ee9d-11f1-b8a3-b77be922693c\nstatus_wsrep_last_committed=12\nstatus_wsrep_ready=ON\nstatus_wsrep_on=1\n@@ end\n";

    fn ip() -> IpAddr {
        "192.0.2.31".parse().expect("ip")
    }

    #[test]
    fn parses_a_synced_member() {
        let v = parse_gather("mq1", ip(), RUNNING);
        assert!(v.synced_primary());
        let w = v.wsrep.as_ref().expect("wsrep");
        assert_eq!((w.cluster_size, w.last_committed), (3, 12));
        assert_eq!(v.grastate.as_ref().map(|g| g.seqno), Some(-1));
        assert!(!v.stale_config);
    }

    #[test]
    fn parses_a_stopped_node_and_a_fresh_one() {
        let v = parse_gather(
            "mq2",
            ip(),
            "state=failed\ngra_uuid=u\ngra_seqno=41\ngra_safe=1\n@@ end\n",
        );
        assert!(!v.running());
        assert_eq!(
            v.grastate,
            Some(GraState {
                uuid: "u".into(),
                seqno: 41,
                safe_to_bootstrap: true
            })
        );
        let f = parse_gather("mq3", ip(), "state=inactive\n@@ end\n");
        assert!(f.grastate.is_none() && f.wsrep.is_none() && f.error.is_none());
        let e = parse_gather(
            "mq3",
            ip(),
            "state=active\nERROR 2002 (HY000): Can't connect\n@@ end\n",
        );
        assert_eq!(
            e.error.as_deref(),
            Some("ERROR 2002 (HY000): Can't connect")
        );
    }

    #[test]
    fn parses_recovered_positions() {
        assert_eq!(
            parse_position("position=9d71433d-ee9d-11f1-b8a3-b77be922693c:10\n"),
            Some(("9d71433d-ee9d-11f1-b8a3-b77be922693c".into(), 10))
        );
        assert_eq!(parse_position("position=\n"), None);
    }

    fn cand(host: &str, seqno: i64, safe: bool) -> Candidate {
        Candidate {
            host: host.into(),
            uuid: "u".into(),
            seqno,
            safe_to_bootstrap: safe,
        }
    }

    #[test]
    fn recovery_starts_from_the_highest_seqno() {
        let c = [
            cand("mq1", 9, false),
            cand("mq2", 8, false),
            cand("mq3", 10, false),
        ];
        assert_eq!(recovery_choice(&c).expect("choice").host, "mq3");
        // A tie: the node marked safe, then inventory order.
        let c = [
            cand("mq1", 10, false),
            cand("mq2", 10, true),
            cand("mq3", 10, false),
        ];
        assert_eq!(recovery_choice(&c).expect("choice").host, "mq2");
        let c = [cand("mq1", 10, false), cand("mq2", 10, false)];
        assert_eq!(recovery_choice(&c).expect("choice").host, "mq1");
        let mut other = cand("mq2", 50, false);
        other.uuid = "v".into();
        let e = recovery_choice(&[cand("mq1", 10, false), other]).expect_err("two histories");
        assert_eq!(e.code, Code::E036);
        assert!(recovery_choice(&[cand("mq1", -1, false)]).is_err());
    }

    #[test]
    fn decides_fresh_running_all_down_and_refuses_without_primary() {
        let fresh = |h: &str| parse_gather(h, ip(), "state=inactive\n@@ end\n");
        assert_eq!(
            decide(&[fresh("mq1"), fresh("mq2"), fresh("mq3")]),
            Ok(Start::Fresh("mq1".into()))
        );
        let up = parse_gather("mq1", ip(), RUNNING);
        assert_eq!(
            decide(&[up.clone(), fresh("mq2"), fresh("mq3")]),
            Ok(Start::Running(vec!["mq1".into()]))
        );
        let down = |h: &str| {
            parse_gather(
                h,
                ip(),
                "state=failed\ngra_uuid=u\ngra_seqno=-1\ngra_safe=0\n",
            )
        };
        assert_eq!(
            decide(&[down("mq1"), down("mq2"), fresh("mq3")]),
            Ok(Start::AllDown)
        );
        let np = parse_gather(
            "mq1",
            ip(),
            &RUNNING.replace("cluster_status=Primary", "cluster_status=non-Primary"),
        );
        assert_eq!(
            decide(&[np, down("mq2"), down("mq3")])
                .expect_err("no primary")
                .code,
            Code::E036
        );
    }
}
