//! What kbz sees of a running RabbitMQ cluster and what it decides from it: parsers of the
//! observation's sections ([`parse_observation`]: JSON in the shape of the CLI tools'
//! `cluster_status`, `list_users`, `list_vhosts`, `list_user_permissions`) and the pure
//! decisions (who joins whom; which users, vhosts, tags and permissions to
//! fix). Tested on captured output of RabbitMQ 3.10.8 (Debian 12).

use kbz_errors::Code;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The parts of `rabbitmqctl cluster_status --formatter json` kbz uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterStatus {
    /// Nodes whose RabbitMQ application runs, as this node sees them.
    pub running_nodes: Vec<String>,
    /// Members of the cluster (disk nodes), running or not.
    pub disk_nodes: Vec<String>,
    /// Nodes this node sees in a network partition (empty when none).
    pub partitioned: Vec<String>,
    /// Resource alarms anywhere in the cluster (`memory`, `disk`), as `node: alarm`.
    pub alarms: Vec<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    running_nodes: Vec<String>,
    #[serde(default)]
    disk_nodes: Vec<String>,
    #[serde(default)]
    partitions: serde_json::Value,
    #[serde(default)]
    alarms: serde_json::Value,
}

/// Parses `cluster_status --formatter json`. `Err` with the first line of what came back
/// when it is not such output (the node is down, a wrong cookie).
pub fn parse_cluster_status(text: &str) -> Result<ClusterStatus, String> {
    let start = text.find('{').ok_or_else(|| first_line(text))?;
    let raw: RawStatus =
        serde_json::from_str(text[start..].trim()).map_err(|_| first_line(text))?;
    let mut partitioned = BTreeSet::new();
    if let serde_json::Value::Object(m) = &raw.partitions {
        for v in m.values() {
            if let serde_json::Value::Array(a) = v {
                partitioned.extend(a.iter().filter_map(|n| n.as_str().map(String::from)));
            }
        }
    }
    let alarms = match &raw.alarms {
        serde_json::Value::Array(a) => a.iter().map(alarm_text).collect(),
        _ => Vec::new(),
    };
    Ok(ClusterStatus {
        running_nodes: raw.running_nodes,
        disk_nodes: raw.disk_nodes,
        partitioned: partitioned.into_iter().collect(),
        alarms,
    })
}

fn alarm_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) => {
            let node = m.get("node").and_then(|n| n.as_str()).unwrap_or("?");
            let what = m
                .get("resource")
                .or_else(|| m.get("type"))
                .and_then(|n| n.as_str())
                .unwrap_or("alarm");
            format!("{node}: {what}")
        }
        other => other.to_string(),
    }
}

/// The first line of an answer, bounded, for messages.
pub fn first_line(t: &str) -> String {
    let l = t
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no answer");
    l.chars().take(200).collect()
}

/// One node as the cluster step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Inventory hostname.
    pub host: String,
    /// Its node name (`rabbit@mq1`).
    pub node: String,
    /// Its `cluster_status`, or the text that came back instead.
    pub status: Result<ClusterStatus, String>,
}

/// Why the cluster cannot be formed by kbz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecided {
    /// E035 (cluster not formed).
    pub code: Code,
    /// What is wrong.
    pub reason: String,
}

/// One join: `host`'s node leaves its one-node cluster and joins `seed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Hostname of the joining node.
    pub host: String,
    /// Its node name.
    pub node: String,
    /// The node it joins.
    pub seed: String,
}

/// Who must join whom. The cluster with the most members is kept (ties: the one holding the
/// earliest inventory node); a node alone in a cluster of its own joins it. A second cluster
/// of several nodes is never touched: E035. A converged cluster needs no join.
pub fn plan_joins(views: &[NodeView]) -> Result<Vec<Join>, Undecided> {
    let mut clusters: Vec<BTreeSet<String>> = Vec::new();
    for v in views {
        let s = v.status.as_ref().map_err(|t| Undecided {
            code: Code::E035,
            reason: format!("{} ({}) does not answer: {t}", v.host, v.node),
        })?;
        let mut members: BTreeSet<String> = s.disk_nodes.iter().cloned().collect();
        members.insert(v.node.clone());
        if !clusters.contains(&members) {
            clusters.push(members);
        }
    }
    let pos = |c: &BTreeSet<String>| {
        views
            .iter()
            .position(|v| c.contains(&v.node))
            .unwrap_or(usize::MAX)
    };
    let Some(keep) = clusters
        .iter()
        .min_by_key(|c| (std::cmp::Reverse(c.len()), pos(c)))
        .cloned()
    else {
        return Ok(Vec::new());
    };
    let seed = views
        .iter()
        .find(|v| keep.contains(&v.node))
        .map(|v| v.node.clone())
        .unwrap_or_default();
    let mut joins = Vec::new();
    for v in views {
        if keep.contains(&v.node) {
            continue;
        }
        let s = v.status.as_ref().map_err(|t| Undecided {
            code: Code::E035,
            reason: t.clone(),
        })?;
        let alone = s.disk_nodes.iter().all(|n| n == &v.node);
        if !alone {
            return Err(Undecided {
                code: Code::E035,
                reason: format!(
                    "{} ({}) is in another cluster of several nodes ({}) while {seed} leads \
                     the larger one; kbz does not reset a node with members",
                    v.host,
                    v.node,
                    s.disk_nodes.join(", ")
                ),
            });
        }
        joins.push(Join {
            host: v.host.clone(),
            node: v.node.clone(),
            seed: seed.clone(),
        });
    }
    Ok(joins)
}

/// Expected nodes missing from `running` (empty when every node runs).
pub fn missing<'a>(expected: &'a [String], running: &[String]) -> Vec<&'a str> {
    expected
        .iter()
        .filter(|n| !running.contains(n))
        .map(String::as_str)
        .collect()
}

/// A user as `list_users` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// Name.
    pub user: String,
    /// Tags (`administrator`).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A vhost as `list_vhosts name default_queue_type` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Vhost {
    /// Name.
    pub name: String,
    /// `quorum`, `classic`, `stream` or `undefined`.
    #[serde(default)]
    pub default_queue_type: Option<String>,
}

/// One user's permissions on one vhost, as `list_user_permissions` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Permission {
    /// Vhost.
    pub vhost: String,
    /// Configure regex.
    pub configure: String,
    /// Write regex.
    pub write: String,
    /// Read regex.
    pub read: String,
}

/// Parses a JSON array printed by the CLI (`[]` for an empty list); `None` when it is not one
/// (an error such as "no such user").
pub fn parse_list<T: for<'de> Deserialize<'de>>(text: &str) -> Option<Vec<T>> {
    let start = text.find('[')?;
    serde_json::from_str(text[start..].trim()).ok()
}

/// What the users step sees on one node in one round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessView {
    /// Every user.
    pub users: Vec<User>,
    /// Every vhost.
    pub vhosts: Vec<Vhost>,
    /// The admin user's permissions (empty when it does not exist).
    pub admin_permissions: Vec<Permission>,
    /// The application user's permissions.
    pub app_permissions: Vec<Permission>,
}

/// Splits `@@ name` sections (ended by `@@ end`) of a script's output.
pub fn sections(out: &str) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let mut cur: Option<String> = None;
    for l in out.lines() {
        let l = l.trim_end_matches('\r');
        if l == "@@ end" {
            cur = None;
        } else if let Some(n) = l.strip_prefix("@@ ") {
            cur = Some(n.to_string());
            m.entry(n.to_string()).or_insert_with(String::new);
        } else if let Some(c) = &cur {
            let e = m.entry(c.clone()).or_insert_with(String::new);
            e.push_str(l);
            e.push('\n');
        }
    }
    m
}

/// Parses the access sections (`users`, `vhosts`, `admin-permissions`, `app-permissions`).
/// `Err` when the user or vhost list is unreadable (the node does not answer).
pub fn parse_access(out: &str) -> Result<AccessView, String> {
    access_from(&sections(out))
}

fn access_from(s: &std::collections::BTreeMap<String, String>) -> Result<AccessView, String> {
    let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
    let users = parse_list::<User>(get("users")).ok_or_else(|| first_line(get("users")))?;
    let vhosts = parse_list::<Vhost>(get("vhosts")).ok_or_else(|| first_line(get("vhosts")))?;
    Ok(AccessView {
        users,
        vhosts,
        admin_permissions: parse_list(get("admin-permissions")).unwrap_or_default(),
        app_permissions: parse_list(get("app-permissions")).unwrap_or_default(),
    })
}

/// Parses the `@@ auth` section: the users whose password logged in.
pub fn parse_auth(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("ok "))
        .map(|u| u.trim_matches('\'').to_string())
        .collect()
}

/// Everything one observation ([`crate::scripts::observe`]) tells of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Whether the RabbitMQ application runs (`Err`: the node did not answer, with the
    /// first line of what came back).
    pub running: Result<bool, String>,
    /// Its view of the cluster.
    pub status: Result<ClusterStatus, String>,
    /// Its own memory and disk alarms.
    pub local_alarms: Result<Vec<String>, String>,
    /// Users, vhosts and kbz's users' permissions (`Err` when not asked or unreadable).
    pub access: Result<AccessView, String>,
    /// kbz's users whose password logs in.
    pub authenticated: Vec<String>,
}

impl Observation {
    /// Whether the node runs.
    pub fn is_running(&self) -> bool {
        self.running == Ok(true)
    }
}

/// Parses an observation's output (see [`crate::scripts::observe_expr`]). A node that does
/// not answer gives `Err` everywhere, with the first line of what came back.
pub fn parse_observation(out: &str) -> Observation {
    let s = sections(out);
    // A node that does not run answers `running` only; one that does not answer at all
    // gives what came back instead.
    let whole = match s.get("running").map(|t| t.trim()) {
        Some("no") => "the RabbitMQ application is not running (booting or stopped)".to_string(),
        _ => first_line(out),
    };
    let section = |k: &str| -> Result<&str, String> {
        match s.get(k) {
            None => Err(whole.clone()),
            Some(t) if t.trim_start().starts_with("error:") => Err(first_line(t)),
            Some(t) => Ok(t.as_str()),
        }
    };
    let running = section("running").map(|t| t.trim() == "yes");
    let status = section("cluster").and_then(parse_cluster_status);
    let local_alarms =
        section("local-alarms").and_then(|t| parse_list::<String>(t).ok_or_else(|| first_line(t)));
    let access = if s.contains_key("users") {
        access_from(&s)
    } else {
        Err(whole.clone())
    };
    Observation {
        running,
        status,
        local_alarms,
        access,
        authenticated: section("auth").map(parse_auth).unwrap_or_default(),
    }
}

/// One user kbz manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedUser {
    /// Name.
    pub name: String,
    /// Its secret's name in the secrets file.
    pub secret: String,
    /// Tags it must have, sorted.
    pub tags: Vec<String>,
    /// Vhosts it must have full permissions on.
    pub vhosts: Vec<String>,
}

/// One access change, in the order they must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessAction {
    /// `add_vhost NAME --default-queue-type quorum`.
    AddVhost(String),
    /// `add_user NAME` (password on stdin).
    AddUser(WantedUser),
    /// `change_password NAME` (password on stdin): the user exists but the secret does not
    /// authenticate.
    ChangePassword(WantedUser),
    /// `set_user_tags NAME TAGS`.
    SetTags(WantedUser),
    /// `set_permissions -p VHOST NAME .* .* .*`.
    SetPermissions(WantedUser, String),
    /// `delete_user guest`.
    DeleteUser(String),
}

impl AccessAction {
    /// A line for the run report (never a secret).
    pub fn describe(&self) -> String {
        match self {
            AccessAction::AddVhost(v) => format!("vhost {v} added (default queue type quorum)"),
            AccessAction::AddUser(u) => format!("user {} added", u.name),
            AccessAction::ChangePassword(u) => {
                format!("user {}: password set from the secrets file", u.name)
            }
            AccessAction::SetTags(u) => format!("user {}: tags [{}]", u.name, u.tags.join(",")),
            AccessAction::SetPermissions(u, v) => {
                format!("user {}: full permissions on vhost {v}", u.name)
            }
            AccessAction::DeleteUser(n) => format!("user {n} deleted"),
        }
    }
}

/// Full permissions: what kbz grants its users on their vhosts.
pub const FULL: &str = ".*";

/// The actions that bring `seen` to the wanted users and vhost. `authenticates(name)` says
/// whether the user's secret logs in now (asked on the host, password on stdin).
pub fn access_actions(
    seen: &AccessView,
    vhost: &str,
    wanted: &[WantedUser],
    authenticates: impl Fn(&str) -> bool,
) -> Vec<AccessAction> {
    let mut out = Vec::new();
    if !seen.vhosts.iter().any(|v| v.name == vhost) {
        out.push(AccessAction::AddVhost(vhost.into()));
    }
    for w in wanted {
        let perms = if w.name == wanted[0].name {
            &seen.admin_permissions
        } else {
            &seen.app_permissions
        };
        match seen.users.iter().find(|u| u.user == w.name) {
            None => {
                out.push(AccessAction::AddUser(w.clone()));
                if !w.tags.is_empty() {
                    out.push(AccessAction::SetTags(w.clone()));
                }
                for v in &w.vhosts {
                    out.push(AccessAction::SetPermissions(w.clone(), v.clone()));
                }
            }
            Some(u) => {
                if !authenticates(&w.name) {
                    out.push(AccessAction::ChangePassword(w.clone()));
                }
                let mut have = u.tags.clone();
                have.sort();
                if have != w.tags {
                    out.push(AccessAction::SetTags(w.clone()));
                }
                for v in &w.vhosts {
                    let full = perms.iter().any(|p| {
                        &p.vhost == v && p.configure == FULL && p.write == FULL && p.read == FULL
                    });
                    if !full {
                        out.push(AccessAction::SetPermissions(w.clone(), v.clone()));
                    }
                }
            }
        }
    }
    if seen.users.iter().any(|u| u.user == "guest") {
        out.push(AccessAction::DeleteUser("guest".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // As rabbitmqctl 3.10.8 prints it for a three-node cluster (feature flags shortened).
    pub const STATUS3: &str = r#"{"alarms":[],"cluster_name":"rabbit@mq1","disk_nodes":["rabbit@mq1","rabbit@mq2","rabbit@mq3"],"feature_flags":[{"name":"quorum_queue","state":"enabled"}],"listeners":{},"maintenance_status":{},"partitions":{},"ram_nodes":[],"running_nodes":["rabbit@mq3","rabbit@mq2","rabbit@mq1"],"versions":{}}"#;

    fn alone(n: &str) -> String {
        format!(r#"{{"alarms":[],"disk_nodes":["{n}"],"partitions":{{}},"running_nodes":["{n}"]}}"#)
    }

    fn view(h: &str, text: &str) -> NodeView {
        NodeView {
            host: h.into(),
            node: format!("rabbit@{h}"),
            status: parse_cluster_status(text),
        }
    }

    #[test]
    fn parses_cluster_status() {
        let s = parse_cluster_status(STATUS3).expect("status");
        assert_eq!(s.disk_nodes.len(), 3);
        assert_eq!(s.running_nodes.len(), 3);
        assert!(s.partitioned.is_empty());
        assert!(s.alarms.is_empty());
        let p = parse_cluster_status(
            r#"{"alarms":[{"node":"rabbit@mq2","resource":"memory"}],"disk_nodes":[],"partitions":{"rabbit@mq1":["rabbit@mq3"]},"running_nodes":[]}"#,
        )
        .expect("status");
        assert_eq!(p.partitioned, ["rabbit@mq3"]);
        assert_eq!(p.alarms, ["rabbit@mq2: memory"]);
        assert!(parse_cluster_status(
            "Error: unable to perform an operation on node 'rabbit@mq1'."
        )
        .is_err());
    }

    #[test]
    fn observations_of_a_running_a_stopped_and_a_silent_node() {
        let up = format!(
            "@@ running\nyes\n@@ local-alarms\n[\"memory\"]\n@@ cluster\n{STATUS3}\n@@ auth\nok 'app'\nbad 'kbz_admin'\n@@ end\nok\n"
        );
        let o = parse_observation(&up);
        assert!(o.is_running());
        assert_eq!(o.local_alarms, Ok(vec!["memory".to_string()]));
        assert_eq!(o.status.expect("status").running_nodes.len(), 3);
        assert_eq!(o.authenticated, ["app"]);
        // Not asked about users: no access view.
        assert!(o.access.is_err());

        let stopped = parse_observation("@@ running\nno\n@@ end\nok\n");
        assert_eq!(stopped.running, Ok(false));
        let why = stopped.status.expect_err("no status");
        assert!(why.contains("not running"), "{why}");

        let silent = parse_observation(
            "Error: unable to perform an operation on node 'rabbit@mq1'. Please see diagnostics\n",
        );
        assert!(silent
            .running
            .expect_err("no answer")
            .starts_with("Error: unable"));
        assert!(silent.access.is_err() && silent.authenticated.is_empty());
    }

    #[test]
    fn a_formed_cluster_needs_no_join() {
        let v: Vec<NodeView> = ["mq1", "mq2", "mq3"]
            .iter()
            .map(|h| view(h, STATUS3))
            .collect();
        assert_eq!(plan_joins(&v).expect("plan"), Vec::new());
    }

    #[test]
    fn lone_nodes_join_the_first_inventory_node() {
        let v: Vec<NodeView> = ["mq1", "mq2", "mq3"]
            .iter()
            .map(|h| view(h, &alone(&format!("rabbit@{h}"))))
            .collect();
        let j = plan_joins(&v).expect("plan");
        assert_eq!(j.len(), 2);
        assert!(j.iter().all(|j| j.seed == "rabbit@mq1"));
        assert_eq!(j[0].host, "mq2");
    }

    #[test]
    fn a_lone_node_joins_the_larger_cluster_even_when_it_is_first() {
        let two = r#"{"alarms":[],"disk_nodes":["rabbit@mq2","rabbit@mq3"],"partitions":{},"running_nodes":["rabbit@mq2","rabbit@mq3"]}"#;
        let v = vec![
            view("mq1", &alone("rabbit@mq1")),
            view("mq2", two),
            view("mq3", two),
        ];
        let j = plan_joins(&v).expect("plan");
        assert_eq!(
            j,
            vec![Join {
                host: "mq1".into(),
                node: "rabbit@mq1".into(),
                seed: "rabbit@mq2".into()
            }]
        );
    }

    #[test]
    fn two_multi_node_clusters_are_refused() {
        let a = r#"{"disk_nodes":["rabbit@mq1","rabbit@mq2"],"running_nodes":[]}"#;
        let b = r#"{"disk_nodes":["rabbit@mq3","rabbit@mq4"],"running_nodes":[]}"#;
        let v = vec![
            view("mq1", a),
            view("mq2", a),
            view("mq3", b),
            view("mq4", b),
        ];
        let e = plan_joins(&v).expect_err("two clusters");
        assert_eq!(e.code, Code::E035);
    }

    fn wanted() -> Vec<WantedUser> {
        vec![
            WantedUser {
                name: "kbz_admin".into(),
                secret: "a".into(),
                tags: vec!["administrator".into()],
                vhosts: vec!["/".into(), "app".into()],
            },
            WantedUser {
                name: "app".into(),
                secret: "b".into(),
                tags: vec![],
                vhosts: vec!["app".into()],
            },
        ]
    }

    #[test]
    fn fresh_node_gets_vhost_users_and_loses_guest() {
        let seen = parse_access(
            "@@ users\n[\n{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n]\n@@ vhosts\n[\n{\"name\":\"/\",\"default_queue_type\":\"undefined\"}\n]\n@@ admin-permissions\nError: no such user\n@@ app-permissions\nError:\n@@ end\n",
        )
        .expect("access");
        let a = access_actions(&seen, "app", &wanted(), |_| false);
        let d: Vec<String> = a.iter().map(AccessAction::describe).collect();
        assert_eq!(
            d,
            [
                "vhost app added (default queue type quorum)",
                "user kbz_admin added",
                "user kbz_admin: tags [administrator]",
                "user kbz_admin: full permissions on vhost /",
                "user kbz_admin: full permissions on vhost app",
                "user app added",
                "user app: full permissions on vhost app",
                "user guest deleted",
            ]
        );
    }

    #[test]
    fn converged_access_needs_nothing_and_a_drifted_password_is_reset() {
        let full = |v: &str| Permission {
            vhost: v.into(),
            configure: FULL.into(),
            write: FULL.into(),
            read: FULL.into(),
        };
        let seen = AccessView {
            users: vec![
                User {
                    user: "kbz_admin".into(),
                    tags: vec!["administrator".into()],
                },
                User {
                    user: "app".into(),
                    tags: vec![],
                },
            ],
            vhosts: vec![Vhost {
                name: "app".into(),
                default_queue_type: Some("quorum".into()),
            }],
            admin_permissions: vec![full("/"), full("app")],
            app_permissions: vec![full("app")],
        };
        assert!(access_actions(&seen, "app", &wanted(), |_| true).is_empty());
        let a = access_actions(&seen, "app", &wanted(), |u| u != "app");
        assert_eq!(a.len(), 1);
        assert!(matches!(&a[0], AccessAction::ChangePassword(u) if u.name == "app"));
    }
}
