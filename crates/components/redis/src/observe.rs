//! What kbz sees of a running cluster, and what it decides from it. Parsers of `redis-cli`
//! output (INFO replication, SENTINEL MASTER, SENTINEL CKQUORUM) and the pure decision of who
//! the master is and what, if anything, must be done. Tested on captured output.
//!
//! The rule: Sentinel is the authority on who the master is. The first Redis host of the
//! inventory is the master only at bootstrap, when no Sentinel monitors the cluster yet and
//! no node has replicas.

use kbz_errors::Code;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A node's role as Redis reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// `role:master`.
    Master,
    /// `role:slave`.
    Replica,
}

/// The parts of `INFO replication` kbz uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// Role.
    pub role: NodeRole,
    /// Replicas: the master it follows.
    pub master_host: Option<IpAddr>,
    /// Replicas: the master's port.
    pub master_port: Option<u16>,
    /// Replicas: `master_link_status:up`.
    pub link_up: bool,
    /// Masters: `connected_slaves`.
    pub connected_slaves: u32,
    /// Masters: addresses of replicas in state `online`.
    pub online_replicas: Vec<IpAddr>,
}

impl std::fmt::Display for Replication {
    /// `master with 2 replicas online` or `replica of 10.0.0.1:6379, link up`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.role {
            NodeRole::Master => write!(
                f,
                "master with {} replica(s) online",
                self.online_replicas.len()
            ),
            NodeRole::Replica => {
                match self.master_host {
                    Some(ip) => write!(f, "replica of {ip}:{}", self.master_port.unwrap_or(0))?,
                    None => write!(f, "replica of no master")?,
                }
                write!(f, ", link {}", if self.link_up { "up" } else { "down" })
            }
        }
    }
}

/// What a node's replication looked like, for messages: its [`Replication`] or the text
/// that came back instead.
pub fn describe_replication(r: &Result<Replication, String>) -> String {
    match r {
        Ok(r) => r.to_string(),
        Err(text) => format!("no replication answer: {text}"),
    }
}

/// Parses `INFO replication` (CRLF or LF line ends). `None` when it is not such output
/// (an error, a refused connection, NOAUTH).
pub fn parse_info_replication(text: &str) -> Option<Replication> {
    let kv: BTreeMap<&str, &str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| l.split_once(':'))
        .collect();
    let role = match *kv.get("role")? {
        "master" => NodeRole::Master,
        "slave" | "replica" => NodeRole::Replica,
        _ => return None,
    };
    let online_replicas = kv
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("slave")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .filter_map(|(_, v)| {
            let f: BTreeMap<&str, &str> = v.split(',').filter_map(|p| p.split_once('=')).collect();
            (f.get("state") == Some(&"online"))
                .then(|| f.get("ip").and_then(|ip| ip.parse().ok()))
                .flatten()
        })
        .collect();
    Some(Replication {
        role,
        master_host: kv.get("master_host").and_then(|v| v.parse().ok()),
        master_port: kv.get("master_port").and_then(|v| v.parse().ok()),
        link_up: kv.get("master_link_status") == Some(&"up"),
        connected_slaves: kv
            .get("connected_slaves")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        online_replicas,
    })
}

/// The parts of `SENTINEL MASTER kbz` kbz uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelMaster {
    /// The master's address as this Sentinel knows it.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Flags (`master`, `s_down`, `o_down`, `disconnected`).
    pub flags: Vec<String>,
    /// Quorum.
    pub quorum: u64,
    /// `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// `parallel-syncs`.
    pub parallel_syncs: u64,
    /// Replicas this Sentinel knows.
    pub num_replicas: u64,
    /// Other Sentinels this Sentinel knows.
    pub num_other_sentinels: u64,
}

/// What one Sentinel says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelView {
    /// It does not monitor `kbz` (a fresh Sentinel).
    NotMonitoring,
    /// It monitors `kbz`.
    Monitoring(SentinelMaster),
    /// No usable answer (down, wrong password): the text seen.
    Unreachable(String),
}

impl std::fmt::Display for SentinelView {
    /// `not monitoring`, `monitoring 10.0.0.1:6379 (quorum 2)` or `unreachable: TEXT`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SentinelView::NotMonitoring => write!(f, "not monitoring"),
            SentinelView::Monitoring(m) => {
                write!(f, "monitoring {}:{} (quorum {})", m.ip, m.port, m.quorum)
            }
            SentinelView::Unreachable(t) => write!(f, "unreachable: {t}"),
        }
    }
}

/// Parses `SENTINEL MASTER <name>` as redis-cli prints it without a terminal (one field per
/// line: name, value, name, value...).
pub fn parse_sentinel_master(text: &str) -> SentinelView {
    let t = text.trim();
    if t.contains("No such master with that name") {
        return SentinelView::NotMonitoring;
    }
    let lines: Vec<&str> = t.lines().map(|l| l.trim_end_matches('\r')).collect();
    let kv: BTreeMap<&str, &str> = lines
        .chunks(2)
        .filter_map(|c| match c {
            [k, v] => Some((*k, *v)),
            _ => None,
        })
        .collect();
    let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
    let parsed = (|| {
        Some(SentinelMaster {
            ip: kv.get("ip")?.parse().ok()?,
            port: kv.get("port")?.parse().ok()?,
            flags: kv.get("flags")?.split(',').map(str::to_string).collect(),
            quorum: num("quorum")?,
            down_after_ms: num("down-after-milliseconds")?,
            failover_timeout_ms: num("failover-timeout")?,
            parallel_syncs: num("parallel-syncs")?,
            num_replicas: num("num-slaves")?,
            num_other_sentinels: num("num-other-sentinels")?,
        })
    })();
    match parsed {
        Some(m) => SentinelView::Monitoring(m),
        None => SentinelView::Unreachable(first_line(t)),
    }
}

/// True when a `SENTINEL CKQUORUM` answer says the quorum and a failover majority are reachable.
pub fn ckquorum_ok(text: &str) -> bool {
    text.trim_start().starts_with("OK")
}

fn first_line(t: &str) -> String {
    let l = t.lines().next().unwrap_or("").trim();
    if l.is_empty() {
        "no answer".into()
    } else {
        l.chars().take(200).collect()
    }
}

/// Everything seen on one node in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Inventory hostname.
    pub host: String,
    /// Inventory address.
    pub ip: IpAddr,
    /// Redis's replication state, or the text that came back instead.
    pub redis: Result<Replication, String>,
    /// The local Sentinel's view.
    pub sentinel: SentinelView,
    /// The local Sentinel's CKQUORUM answer (empty when not asked).
    pub ckquorum: String,
}

/// Section markers of the gather script's output.
pub(crate) const SECTIONS: [&str; 3] = ["@@ redis", "@@ sentinel-master", "@@ sentinel-ckquorum"];

/// Parses the gather script's output (see `scripts::gather`).
pub fn parse_gather(host: &str, ip: IpAddr, out: &str) -> NodeView {
    let mut sections: BTreeMap<&str, String> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for line in out.lines() {
        let l = line.trim_end_matches('\r');
        if let Some(s) = SECTIONS.iter().find(|s| **s == l) {
            current = Some(s);
            sections.entry(s).or_default();
            continue;
        }
        if l == "@@ end" {
            current = None;
            continue;
        }
        if let Some(s) = current {
            let e = sections.entry(s).or_default();
            e.push_str(l);
            e.push('\n');
        }
    }
    let redis_text = sections.get(SECTIONS[0]).cloned().unwrap_or_default();
    let redis = parse_info_replication(&redis_text).ok_or_else(|| first_line(&redis_text));
    let sentinel = match sections.get(SECTIONS[1]) {
        Some(t) => parse_sentinel_master(t),
        None => SentinelView::Unreachable("no answer".into()),
    };
    NodeView {
        host: host.into(),
        ip,
        redis,
        sentinel,
        ckquorum: sections
            .get(SECTIONS[2])
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// How the master was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterSource {
    /// A majority of the Sentinels that monitor the cluster name it.
    Sentinels,
    /// No Sentinel monitors yet, but exactly one node has replicas.
    Replication,
    /// A fresh cluster: the first Redis host of the inventory.
    Bootstrap,
}

/// The master kbz will work with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterChoice {
    /// Its address.
    pub ip: IpAddr,
    /// Why.
    pub source: MasterSource,
}

/// Why no master could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecided {
    /// E038 (replication) or E039 (Sentinel).
    pub code: Code,
    /// What is wrong.
    pub reason: String,
    /// True when the state may settle by itself (a failover in progress): poll again.
    pub transient: bool,
}

/// Decides who the master is. `bootstrap` is the first Redis host of the inventory;
/// `inventory` the addresses of every Redis host.
pub fn choose_master(
    views: &[NodeView],
    bootstrap: IpAddr,
    inventory: &[IpAddr],
) -> Result<MasterChoice, Undecided> {
    let monitoring: Vec<&SentinelMaster> = views
        .iter()
        .filter_map(|v| match &v.sentinel {
            SentinelView::Monitoring(m) => Some(m),
            _ => None,
        })
        .collect();
    let role_of = |ip: IpAddr| {
        views
            .iter()
            .find(|v| v.ip == ip)
            .and_then(|v| v.redis.as_ref().ok())
    };
    if !monitoring.is_empty() {
        let mut votes: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for m in &monitoring {
            *votes.entry(m.ip).or_default() += 1;
        }
        let (ip, n) = votes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(ip, n)| (*ip, *n))
            .unwrap_or((bootstrap, 0));
        if n * 2 <= monitoring.len() {
            return Err(Undecided {
                code: Code::E039,
                reason: format!(
                    "the Sentinels disagree about the master ({}); a failover may be in progress",
                    votes
                        .iter()
                        .map(|(ip, n)| format!("{ip}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                transient: true,
            });
        }
        if !inventory.contains(&ip) {
            return Err(Undecided {
                code: Code::E039,
                reason: format!(
                    "the Sentinels follow master {ip}, which is not a Redis host of the inventory"
                ),
                transient: false,
            });
        }
        return match role_of(ip) {
            Some(r) if r.role == NodeRole::Master => Ok(MasterChoice {
                ip,
                source: MasterSource::Sentinels,
            }),
            Some(_) => Err(Undecided {
                code: Code::E039,
                reason: format!(
                    "the Sentinels name {ip} as master but it reports itself a replica; a \
                     failover may be in progress"
                ),
                transient: true,
            }),
            None => Err(Undecided {
                code: Code::E038,
                reason: format!("the master {ip} named by the Sentinels does not answer"),
                transient: true,
            }),
        };
    }
    let masters_with_replicas: Vec<IpAddr> = views
        .iter()
        .filter(|v| {
            v.redis
                .as_ref()
                .is_ok_and(|r| r.role == NodeRole::Master && r.connected_slaves > 0)
        })
        .map(|v| v.ip)
        .collect();
    match masters_with_replicas.as_slice() {
        [one] => Ok(MasterChoice {
            ip: *one,
            source: MasterSource::Replication,
        }),
        [] => {
            let replicas: Vec<&NodeView> = views
                .iter()
                .filter(|v| v.redis.as_ref().is_ok_and(|r| r.role == NodeRole::Replica))
                .collect();
            if replicas.is_empty() {
                Ok(MasterChoice {
                    ip: bootstrap,
                    source: MasterSource::Bootstrap,
                })
            } else {
                Err(Undecided {
                    code: Code::E038,
                    reason: format!(
                        "{} replicate(s) but no node is a master with replicas and no Sentinel \
                         monitors the cluster",
                        replicas
                            .iter()
                            .map(|v| v.host.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    transient: true,
                })
            }
        }
        many => Err(Undecided {
            code: Code::E038,
            reason: format!(
                "several nodes are masters with replicas ({}) and no Sentinel monitors the \
                 cluster: a split brain kbz will not resolve by itself",
                many.iter()
                    .map(|ip| ip.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            transient: false,
        }),
    }
}

/// What must happen to one node's replication, given the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationAction {
    /// Nothing: it is the master, or already a replica (whichever master it follows is
    /// Sentinel's business).
    Keep,
    /// A stand-alone master without replicas that is not the master: make it replicate.
    ReplicaOf(IpAddr),
    /// Another master with replicas of its own: two masters. Not touched; E038.
    SplitBrain,
}

/// The action for one node. Only a node that is a master, has no replicas and is not the
/// chosen master is ever told to replicate.
pub fn replication_action(view: &NodeView, master: IpAddr) -> ReplicationAction {
    match &view.redis {
        Ok(r) if view.ip != master && r.role == NodeRole::Master => {
            if r.connected_slaves == 0 {
                ReplicationAction::ReplicaOf(master)
            } else {
                ReplicationAction::SplitBrain
            }
        }
        _ => ReplicationAction::Keep,
    }
}

/// The per-master Sentinel parameters kbz manages, as `SENTINEL SET` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentinelParams {
    /// Quorum.
    pub quorum: u64,
    /// `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// `parallel-syncs`.
    pub parallel_syncs: u64,
}

impl SentinelParams {
    /// Every pair, for a Sentinel that just started monitoring.
    pub fn all(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("quorum", self.quorum),
            ("down-after-milliseconds", self.down_after_ms),
            ("failover-timeout", self.failover_timeout_ms),
            ("parallel-syncs", self.parallel_syncs),
        ]
    }

    /// The pairs whose current value differs (empty on a converged Sentinel).
    pub fn differing(&self, m: &SentinelMaster) -> Vec<(&'static str, u64)> {
        let cur = [
            m.quorum,
            m.down_after_ms,
            m.failover_timeout_ms,
            m.parallel_syncs,
        ];
        self.all()
            .into_iter()
            .zip(cur)
            .filter(|((_, want), have)| want != have)
            .map(|(p, _)| p)
            .collect()
    }
}

/// What must happen to one Sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelAction {
    /// Converged: read-only.
    Keep,
    /// Start monitoring the master (then set every parameter and auth-pass).
    Monitor(IpAddr),
    /// Correct these parameters; `auth_pass` when the Sentinel sees the master down, which is
    /// what a wrong auth-pass looks like.
    Set {
        /// Pairs to set.
        params: Vec<(&'static str, u64)>,
        /// Re-send auth-pass.
        auth_pass: bool,
    },
}

/// The action for one Sentinel. A Sentinel that follows another master than the chosen one
/// is left alone: Sentinels converge among themselves through their epochs.
pub fn sentinel_action(
    view: &SentinelView,
    master: IpAddr,
    want: &SentinelParams,
) -> SentinelAction {
    match view {
        SentinelView::NotMonitoring => SentinelAction::Monitor(master),
        SentinelView::Monitoring(m) if m.ip != master => SentinelAction::Keep,
        SentinelView::Monitoring(m) => {
            let params = want.differing(m);
            let auth_pass = m.flags.iter().any(|f| f == "s_down");
            if params.is_empty() && !auth_pass {
                SentinelAction::Keep
            } else {
                SentinelAction::Set { params, auth_pass }
            }
        }
        SentinelView::Unreachable(_) => SentinelAction::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Field for field as redis-server / redis-sentinel 7.0.15 (Debian 12) print them; the
    // loopback test runs the same parsers against the real daemons.
    const MASTER_INFO: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nmin_slaves_good_slaves:2\r\nslave0:ip=192.0.2.22,port=6379,state=online,offset=4424,lag=0\r\nslave1:ip=192.0.2.23,port=6379,state=wait_bgsave,offset=0,lag=0\r\nmaster_failover_state:no-failover\r\nmaster_replid:4c8bdf3b8f0bd2c9ed2d8dd9aef3d9e5e1ab6dc4\r\nmaster_repl_offset:4424\r\n";
    const REPLICA_INFO: &str = "# Replication\r\nrole:slave\r\nmaster_host:192.0.2.21\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:1\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:4424\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\n";
    const SENTINEL_MASTER: &str = "name\nkbz\nip\n192.0.2.21\nport\n6379\nrunid\n7f3a\nflags\nmaster\nlink-pending-commands\n0\nlink-refcount\n1\nlast-ping-sent\n0\nlast-ok-ping-reply\n381\nlast-ping-reply\n381\ndown-after-milliseconds\n5000\ninfo-refresh\n3021\nrole-reported\nmaster\nrole-reported-time\n60123\nconfig-epoch\n0\nnum-slaves\n2\nnum-other-sentinels\n2\nquorum\n2\nfailover-timeout\n10000\nparallel-syncs\n1\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn view(host: &str, a: &str, info: &str, sentinel: &str) -> NodeView {
        NodeView {
            host: host.into(),
            ip: ip(a),
            redis: parse_info_replication(info).ok_or_else(|| info.to_string()),
            sentinel: parse_sentinel_master(sentinel),
            ckquorum: String::new(),
        }
    }

    fn fresh_master() -> String {
        "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n".into()
    }

    fn sentinel_at(master: &str) -> String {
        SENTINEL_MASTER.replace("192.0.2.21", master)
    }

    const INV: [&str; 3] = ["192.0.2.21", "192.0.2.22", "192.0.2.23"];

    fn inv() -> Vec<IpAddr> {
        INV.iter().map(|s| ip(s)).collect()
    }

    #[test]
    fn parses_master_and_replica_info() {
        let m = parse_info_replication(MASTER_INFO).expect("master");
        assert_eq!(m.role, NodeRole::Master);
        assert_eq!(m.connected_slaves, 2);
        assert_eq!(m.online_replicas, vec![ip("192.0.2.22")]);
        let r = parse_info_replication(REPLICA_INFO).expect("replica");
        assert_eq!(r.role, NodeRole::Replica);
        assert_eq!(r.master_host, Some(ip("192.0.2.21")));
        assert!(r.link_up);
        assert_eq!(
            parse_info_replication("NOAUTH Authentication required."),
            None
        );
        assert_eq!(
            parse_info_replication("Could not connect to Redis at 127.0.0.1:6379"),
            None
        );
    }

    #[test]
    fn parses_sentinel_master() {
        match parse_sentinel_master(SENTINEL_MASTER) {
            SentinelView::Monitoring(m) => {
                assert_eq!(m.ip, ip("192.0.2.21"));
                assert_eq!(m.quorum, 2);
                assert_eq!(m.num_replicas, 2);
                assert_eq!(m.num_other_sentinels, 2);
                assert_eq!(m.failover_timeout_ms, 10000);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            parse_sentinel_master("ERR No such master with that name\n"),
            SentinelView::NotMonitoring
        );
        assert!(matches!(
            parse_sentinel_master("NOAUTH Authentication required."),
            SentinelView::Unreachable(_)
        ));
        assert!(ckquorum_ok(
            "OK 3 usable Sentinels. Quorum and failover authorization can be reached"
        ));
        assert!(!ckquorum_ok("NOQUORUM 1 usable Sentinels."));
    }

    #[test]
    fn gather_output_is_split_into_sections() {
        let out = format!(
            "@@ redis\n{REPLICA_INFO}@@ sentinel-master\n{SENTINEL_MASTER}@@ sentinel-ckquorum\nOK 3 usable Sentinels\n@@ end\n"
        );
        let v = parse_gather("db2", ip("192.0.2.22"), &out);
        assert_eq!(v.redis.expect("info").role, NodeRole::Replica);
        assert!(matches!(v.sentinel, SentinelView::Monitoring(_)));
        assert!(ckquorum_ok(&v.ckquorum));
        let empty = parse_gather("db2", ip("192.0.2.22"), "");
        assert!(empty.redis.is_err());
        assert!(matches!(empty.sentinel, SentinelView::Unreachable(_)));
    }

    #[test]
    fn fresh_cluster_bootstraps_on_the_first_inventory_host() {
        let no = "ERR No such master with that name";
        let views: Vec<NodeView> = [("db1", INV[0]), ("db2", INV[1]), ("db3", INV[2])]
            .iter()
            .map(|(h, a)| view(h, a, &fresh_master(), no))
            .collect();
        let c = choose_master(&views, ip(INV[0]), &inv()).expect("choice");
        assert_eq!(c.ip, ip(INV[0]));
        assert_eq!(c.source, MasterSource::Bootstrap);
        assert_eq!(replication_action(&views[0], c.ip), ReplicationAction::Keep);
        assert_eq!(
            replication_action(&views[1], c.ip),
            ReplicationAction::ReplicaOf(ip(INV[0]))
        );
    }

    #[test]
    fn after_a_failover_the_sentinels_master_wins_over_inventory_order() {
        // Sentinel promoted db2; db1 (the bootstrap master) came back as its replica.
        let replica_of_db2 = REPLICA_INFO.replace("192.0.2.21", "192.0.2.22");
        let views = vec![
            view("db1", INV[0], &replica_of_db2, &sentinel_at(INV[1])),
            view("db2", INV[1], MASTER_INFO, &sentinel_at(INV[1])),
            view("db3", INV[2], &replica_of_db2, &sentinel_at(INV[1])),
        ];
        let c = choose_master(&views, ip(INV[0]), &inv()).expect("choice");
        assert_eq!(c.ip, ip(INV[1]));
        assert_eq!(c.source, MasterSource::Sentinels);
        for v in &views {
            assert_eq!(replication_action(v, c.ip), ReplicationAction::Keep);
        }
        let want = SentinelParams {
            quorum: 2,
            down_after_ms: 5000,
            failover_timeout_ms: 10000,
            parallel_syncs: 1,
        };
        for v in &views {
            assert_eq!(
                sentinel_action(&v.sentinel, c.ip, &want),
                SentinelAction::Keep
            );
        }
    }

    #[test]
    fn a_rebuilt_node_joins_the_current_master_not_the_bootstrap_one() {
        let replica_of_db2 = REPLICA_INFO.replace("192.0.2.21", "192.0.2.22");
        let views = vec![
            view("db1", INV[0], &replica_of_db2, &sentinel_at(INV[1])),
            view("db2", INV[1], MASTER_INFO, &sentinel_at(INV[1])),
            view(
                "db3",
                INV[2],
                &fresh_master(),
                "ERR No such master with that name",
            ),
        ];
        let c = choose_master(&views, ip(INV[0]), &inv()).expect("choice");
        assert_eq!(c.ip, ip(INV[1]));
        assert_eq!(
            replication_action(&views[2], c.ip),
            ReplicationAction::ReplicaOf(ip(INV[1]))
        );
        let want = SentinelParams {
            quorum: 2,
            down_after_ms: 5000,
            failover_timeout_ms: 10000,
            parallel_syncs: 1,
        };
        assert_eq!(
            sentinel_action(&views[2].sentinel, c.ip, &want),
            SentinelAction::Monitor(ip(INV[1]))
        );
    }

    #[test]
    fn disagreeing_sentinels_are_waited_for() {
        let views = vec![
            view("db1", INV[0], MASTER_INFO, &sentinel_at(INV[0])),
            view("db2", INV[1], &fresh_master(), &sentinel_at(INV[1])),
            view(
                "db3",
                INV[2],
                &fresh_master(),
                "NOAUTH Authentication required.",
            ),
        ];
        let e = choose_master(&views, ip(INV[0]), &inv()).expect_err("split");
        assert_eq!(e.code, Code::E039);
        assert!(e.transient);
    }

    #[test]
    fn sentinels_naming_a_replica_are_waited_for() {
        let views = vec![
            view("db1", INV[0], REPLICA_INFO, &sentinel_at(INV[0])),
            view("db2", INV[1], REPLICA_INFO, &sentinel_at(INV[0])),
            view("db3", INV[2], REPLICA_INFO, &sentinel_at(INV[0])),
        ];
        let e = choose_master(&views, ip(INV[0]), &inv()).expect_err("mid-failover");
        assert!(e.transient);
    }

    #[test]
    fn a_foreign_master_is_refused() {
        let s = sentinel_at("192.0.2.99");
        let views = vec![
            view("db1", INV[0], MASTER_INFO, &s),
            view("db2", INV[1], REPLICA_INFO, &s),
            view("db3", INV[2], REPLICA_INFO, &s),
        ];
        let e = choose_master(&views, ip(INV[0]), &inv()).expect_err("foreign");
        assert_eq!(e.code, Code::E039);
        assert!(!e.transient);
    }

    #[test]
    fn two_masters_with_replicas_are_a_split_brain_kbz_does_not_touch() {
        let no = "ERR No such master with that name";
        let views = vec![
            view("db1", INV[0], MASTER_INFO, no),
            view("db2", INV[1], MASTER_INFO, no),
            view("db3", INV[2], REPLICA_INFO, no),
        ];
        let e = choose_master(&views, ip(INV[0]), &inv()).expect_err("split brain");
        assert_eq!(e.code, Code::E038);
        assert!(!e.transient);
        assert_eq!(
            replication_action(&views[1], ip(INV[0])),
            ReplicationAction::SplitBrain
        );
    }

    #[test]
    fn existing_replication_is_adopted_when_sentinels_were_wiped() {
        let no = "ERR No such master with that name";
        let replica_of_db3 = REPLICA_INFO.replace("192.0.2.21", "192.0.2.23");
        let views = vec![
            view("db1", INV[0], &replica_of_db3, no),
            view("db2", INV[1], &replica_of_db3, no),
            view("db3", INV[2], MASTER_INFO, no),
        ];
        let c = choose_master(&views, ip(INV[0]), &inv()).expect("choice");
        assert_eq!(c.ip, ip(INV[2]));
        assert_eq!(c.source, MasterSource::Replication);
    }

    #[test]
    fn sentinel_parameters_are_corrected_only_when_they_differ() {
        let want = SentinelParams {
            quorum: 2,
            down_after_ms: 5000,
            failover_timeout_ms: 30000,
            parallel_syncs: 1,
        };
        let v = parse_sentinel_master(SENTINEL_MASTER);
        assert_eq!(
            sentinel_action(&v, ip(INV[0]), &want),
            SentinelAction::Set {
                params: vec![("failover-timeout", 30000)],
                auth_pass: false
            }
        );
        let down = parse_sentinel_master(
            &SENTINEL_MASTER.replace("flags\nmaster\n", "flags\ns_down,master,disconnected\n"),
        );
        assert!(matches!(
            sentinel_action(&down, ip(INV[0]), &want),
            SentinelAction::Set {
                auth_pass: true,
                ..
            }
        ));
    }
}
