//! The shell scripts kbz runs on RabbitMQ hosts. Each starts with a `# kbz-rabbitmq <name>`
//! line (the test doubles match on it). Passwords never appear in a script or on a command
//! line: `add_user`, `change_password` and `authenticate_user` read them from standard input,
//! which the controller fills (`Cmd::stdin`).

use kbz_core::shell::quote;
use kbz_core::Host;

use crate::layout::Layout;

/// Marker of the one-round-trip `cluster_status` query.
pub const GATHER: &str = "# kbz-rabbitmq gather";
/// Marker of the check that the local node runs (`check_running`).
pub const RUNNING: &str = "# kbz-rabbitmq running";
/// Marker of the users/vhosts/permissions query.
pub const ACCESS: &str = "# kbz-rabbitmq access";
/// Marker of the password check of kbz's users (passwords on stdin).
pub const AUTH: &str = "# kbz-rabbitmq auth";
/// Marker of the guarded join of a lone node.
pub const JOIN: &str = "# kbz-rabbitmq join";
/// Marker of one users/vhost change.
pub const ACCESS_CHANGE: &str = "# kbz-rabbitmq access-change";
/// Marker of the check that stopping a node loses no quorum queue's quorum.
pub const QUORUM_CRITICAL: &str = "# kbz-rabbitmq quorum-critical";

/// Text every mutating script carries, so tests can assert none ran.
pub const MUTATING: &[&str] = &[JOIN, ACCESS_CHANGE];

/// How long one CLI call may take, in seconds.
const CLI_SECS: u32 = 60;

fn ctl(l: &Layout) -> String {
    l.tool("rabbitmqctl", CLI_SECS)
}

fn diag(l: &Layout) -> String {
    l.tool("rabbitmq-diagnostics", CLI_SECS)
}

/// `cluster_status` of the local node in an `@@ cluster` section. Read-only.
pub fn gather(l: &Layout, host: &Host) -> String {
    format!(
        "{GATHER}\n{env}echo '@@ cluster'\n{c} -q cluster_status --formatter json 2>&1\necho '@@ end'\nexit 0\n",
        env = l.cli_env(host),
        c = ctl(l),
    )
}

/// Exits 0 when the local node is fully booted and its RabbitMQ application runs.
pub fn running(l: &Layout, host: &Host) -> String {
    format!(
        "{RUNNING}\n{env}{d} -q check_running 2>&1\n",
        env = l.cli_env(host),
        d = diag(l)
    )
}

/// The health probes' scripts: `check_running`, `check_local_alarms`, `cluster_status`.
pub fn health_running(l: &Layout, host: &Host) -> String {
    format!("{}{} -q check_running 2>&1\n", l.cli_env(host), diag(l))
}

/// `check_local_alarms` (memory and disk alarms of the local node).
pub fn health_alarms(l: &Layout, host: &Host) -> String {
    format!(
        "{}{} -q check_local_alarms 2>&1\n",
        l.cli_env(host),
        diag(l)
    )
}

/// `cluster_status --formatter json`.
pub fn health_cluster(l: &Layout, host: &Host) -> String {
    format!(
        "{}{} -q cluster_status --formatter json 2>&1\n",
        l.cli_env(host),
        ctl(l)
    )
}

/// Users, vhosts and kbz's users' permissions, in `@@` sections. Read-only.
pub fn access(l: &Layout, host: &Host, admin: &str, app: &str) -> String {
    let c = ctl(l);
    format!(
        "{ACCESS}\n{env}echo '@@ users'\n{c} -q list_users --formatter json 2>&1\n\
         echo '@@ vhosts'\n{c} -q list_vhosts name default_queue_type --formatter json 2>&1\n\
         echo '@@ admin-permissions'\n{c} -q list_user_permissions {a} --formatter json 2>&1\n\
         echo '@@ app-permissions'\n{c} -q list_user_permissions {p} --formatter json 2>&1\n\
         echo '@@ end'\nexit 0\n",
        env = l.cli_env(host),
        a = quote(admin),
        p = quote(app),
    )
}

/// Checks each user's password, one per line of stdin in the order of `users`; prints
/// `ok NAME` or `bad NAME` per user. The passwords pass through shell variables and
/// `printf` (a builtin) into the tool's stdin, never through an argv.
pub fn auth(l: &Layout, host: &Host, users: &[&str]) -> String {
    let mut s = format!("{AUTH}\n{}", l.cli_env(host));
    for u in users {
        let q = quote(u);
        s.push_str(&format!(
            "IFS= read -r pw || pw=\nif printf '%s\\n' \"$pw\" | {c} -q authenticate_user {q} >/dev/null 2>&1; then echo ok {q}; else echo bad {q}; fi\n",
            c = ctl(l),
        ));
    }
    s.push_str("pw=\nexit 0\n");
    s
}

/// Parses [`auth`]'s answer: the users whose password authenticates.
pub fn parse_auth(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("ok "))
        .map(|u| u.trim_matches('\'').to_string())
        .collect()
}

/// Makes the local node join `seed`'s cluster, but only if at this moment it is still alone
/// in a cluster of its own (re-checked on the host right before acting; exit 3 otherwise):
/// `stop_app`, `reset` (a lone node holds nothing but the defaults of its first start),
/// `join_cluster`, `start_app`.
pub fn join(l: &Layout, host: &Host, node: &str, seed: &str) -> String {
    let c = ctl(l);
    format!(
        "{JOIN}\nset -e\n{env}s=$({c} -q cluster_status --formatter json 2>&1) || {{ echo \"$s\"; exit 3; }}\n\
         case \"$s\" in *'\"disk_nodes\":[\"'{n}'\"]'*) ;; *) echo \"not alone: $s\"; exit 3;; esac\n\
         {c} -q stop_app\n{c} -q reset\n{c} -q join_cluster {seed}\n{c} -q start_app\n",
        env = l.cli_env(host),
        n = quote(node),
        seed = quote(seed),
    )
}

/// The script of one users/vhost change (`stdin` carries the password where one is set).
pub fn access_change(l: &Layout, host: &Host, args: &[&str], stdin_password: bool) -> String {
    let argv: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let what = args.first().copied().unwrap_or("");
    let call = format!("{} -q {}", ctl(l), argv.join(" "));
    let call = if stdin_password {
        format!("IFS= read -r pw\nprintf '%s\\n' \"$pw\" | {call}\npw=")
    } else {
        call
    };
    format!(
        "{ACCESS_CHANGE} {what}\nset -e\n{env}{call}\n",
        env = l.cli_env(host)
    )
}

/// Exits 0 when none of `nodes` is quorum critical (stopping it would leave some quorum
/// queue without a majority); a node that is not running is skipped when `skip_down`.
pub fn quorum_critical(l: &Layout, host: &Host, nodes: &[String], skip_down: bool) -> String {
    let d = diag(l);
    let mut s = format!("{QUORUM_CRITICAL}\n{}rc=0\n", l.cli_env(host));
    for n in nodes {
        let q = quote(n);
        if skip_down {
            s.push_str(&format!(
                "if {d} -q -n {q} check_running >/dev/null 2>&1; then\n"
            ));
        } else {
            s.push_str("if true; then\n");
        }
        s.push_str(&format!(
            "  {d} -q -n {q} check_if_node_is_quorum_critical 2>&1 || rc=1\nfi\n"
        ));
    }
    s.push_str("exit $rc\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_answers_are_parsed() {
        assert_eq!(
            parse_auth("ok 'kbz_admin'\nbad 'app'\n"),
            vec!["kbz_admin".to_string()]
        );
        assert!(parse_auth("").is_empty());
    }
}
