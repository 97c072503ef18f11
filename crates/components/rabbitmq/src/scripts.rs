//! The shell scripts kbz runs on RabbitMQ hosts. Each starts with a `# kbz-rabbitmq <name>`
//! line (the test doubles match on it). Passwords never appear in a script or on a command
//! line: `add_user` and `change_password` read them from standard input, and the read-only
//! observation ([`observe`]) is one `rabbitmqctl eval` whose Erlang expression (with the
//! passwords it checks, hex-encoded) comes on standard input too, which the controller fills
//! (`Cmd::stdin`).
//!
//! Every `rabbitmqctl` / `rabbitmq-diagnostics` call starts an Erlang VM (about a second on
//! an idle host, several on a loaded one), so what a converged re-run and kbz-health need to
//! read is asked in ONE `eval` per host: whether the node runs, its view of the cluster, its
//! alarms, the users, vhosts, kbz's users' permissions and whether their passwords log in.

use kbz_core::shell::quote;
use kbz_core::Host;

use crate::layout::Layout;

/// Marker of the one-VM read-only observation ([`observe`], expression on stdin).
pub const OBSERVE: &str = "# kbz-rabbitmq observe";
/// Marker of kbz-health's observation (no password checks, expression in a here-document).
pub const HEALTH: &str = "# kbz-rabbitmq health";
/// Marker of the check that the local node runs (`check_running`).
pub const RUNNING: &str = "# kbz-rabbitmq running";
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

/// Exits 0 when the local node is fully booted and its RabbitMQ application runs.
pub fn running(l: &Layout, host: &Host) -> String {
    format!(
        "{RUNNING}\n{env}{d} -q check_running 2>&1\n",
        env = l.cli_env(host),
        d = diag(l)
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

/// The observation script: one `rabbitmqctl eval` reading its expression from standard
/// input ([`observe_expr`]), so the passwords it checks are on no command line.
pub fn observe(l: &Layout, host: &Host) -> String {
    format!(
        "{OBSERVE}\n{env}{c} -q eval 2>&1\n",
        env = l.cli_env(host),
        c = ctl(l),
    )
}

/// kbz-health's probe: the node's state, alarms and view of the cluster in one `eval`
/// ([`observe_expr`] without users), the expression in a quoted here-document.
pub fn health(l: &Layout, host: &Host) -> String {
    format!(
        "{HEALTH}\n{env}{c} -q eval 2>&1 <<'KBZ_EVAL'\n{e}\nKBZ_EVAL\n",
        env = l.cli_env(host),
        c = ctl(l),
        e = observe_expr(None),
    )
}

/// kbz's users whose permissions and passwords [`observe_expr`] asks about.
#[derive(Debug, Clone, Copy)]
pub struct AccessQuery<'a> {
    /// The admin user (its permissions go to `@@ admin-permissions`).
    pub admin: &'a str,
    /// The application user (`@@ app-permissions`).
    pub app: &'a str,
    /// Users and passwords to check (`@@ auth`: `ok 'NAME'` or `bad 'NAME'` per user).
    pub logins: &'a [(&'a str, &'a str)],
}

/// An Erlang binary holding `s`, hex-encoded so that no quote, backslash or newline of a
/// name or password can end the literal.
fn erl_bin(s: &str) -> String {
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    format!("binary:decode_hex(<<\"{hex}\">>)")
}

/// The Erlang expression of the observation. Its output is `@@ name` sections ended by
/// `@@ end`: `running` (`yes`/`no`), `local-alarms` and `cluster` (JSON in the shape of
/// `cluster_status --formatter json`: `running_nodes`, `disk_nodes`, `partitions`,
/// `alarms`), and with `access`: `users`, `vhosts`, `admin-permissions`,
/// `app-permissions` (JSON as `list_users`, `list_vhosts name default_queue_type`,
/// `list_user_permissions` print them) and `auth`. A section that fails says
/// `error: ...` instead. On a node whose RabbitMQ application does not run (still
/// booting, or stopped) it asks nothing beyond that: only `running` (`no`), as
/// `check_running` would, so a booting node is never asked about its tables. Read-only:
/// it lists and checks, and changes nothing.
pub fn observe_expr(access: Option<&AccessQuery<'_>>) -> String {
    let mut e = String::from(
        "S = fun(Name, F) -> io:format(\"@@ ~s~n\", [Name]), try F() of R -> io:format(\"~s~n\", [R]) catch C:E -> io:format(\"error: ~p ~p~n\", [C, E]) end end,\n\
         J = fun(T) -> rabbit_json:encode(T) end,\n\
         Up = rabbit:is_running(),\n\
         io:format(\"@@ running~n~s~n\", [case Up of true -> \"yes\"; false -> \"no\" end]),\n\
         case Up of false -> ok; true ->\n\
         S(\"local-alarms\", fun() -> J([R || {{resource_limit, R, _}, _} <- rabbit_alarm:get_local_alarms()]) end),\n\
         S(\"cluster\", fun() -> J(#{running_nodes => rabbit_nodes:all_running(), disk_nodes => rabbit_mnesia:cluster_nodes(disc), partitions => #{node() => rabbit_node_monitor:partitions()}, alarms => [#{node => N, resource => R} || {{resource_limit, R, N}, _} <- rabbit_alarm:get_alarms()]}) end),\n",
    );
    if let Some(a) = access {
        let perms = |section: &str, user: &str| {
            format!(
                "S(\"{section}\", fun() -> J([maps:from_list(P) || P <- rabbit_auth_backend_internal:list_user_permissions({})]) end),\n",
                erl_bin(user)
            )
        };
        e.push_str(
            "S(\"users\", fun() -> J([#{user => proplists:get_value(user, U), tags => proplists:get_value(tags, U)} || U <- rabbit_auth_backend_internal:list_users()]) end),\n\
             S(\"vhosts\", fun() -> J([maps:from_list(V) || V <- rabbit_vhost:info_all([name, default_queue_type])]) end),\n",
        );
        e.push_str(&perms("admin-permissions", a.admin));
        e.push_str(&perms("app-permissions", a.app));
        let logins: Vec<String> = a
            .logins
            .iter()
            .map(|(u, p)| format!("{{{}, {}}}", erl_bin(u), erl_bin(p)))
            .collect();
        e.push_str(&format!(
            "S(\"auth\", fun() -> [case rabbit_access_control:check_user_pass_login(U, P) of {{ok, _}} -> io_lib:format(\"ok '~s'~n\", [U]); _ -> io_lib:format(\"bad '~s'~n\", [U]) end || {{U, P}} <- [{}]] end),\n",
            logins.join(", ")
        ));
    }
    e.push_str("ok end,\nio:format(\"@@ end~n\"),\nok.");
    e
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
    fn names_and_passwords_reach_the_expression_hex_encoded_only() {
        let pw = "a'p\"p $HOME \\ ;`id` #1\n>>";
        let q = AccessQuery {
            admin: "kbz_admin",
            app: "app\"",
            logins: &[("kbz_admin", pw)],
        };
        let e = observe_expr(Some(&q));
        assert!(!e.contains(pw) && !e.contains("app\""), "{e}");
        assert!(
            e.contains(&format!("binary:decode_hex(<<\"{}\">>)", "61707022")),
            "{e}"
        );
        assert!(e.ends_with("io:format(\"@@ end~n\"),\nok."), "{e}");
        // Without users it lists none and checks no password.
        let h = observe_expr(None);
        assert!(
            !h.contains("users") && !h.contains("check_user_pass_login"),
            "{h}"
        );
    }
}
