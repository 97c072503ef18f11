//! The shell scripts kbz runs on MariaDB hosts. Each starts with a `# kbz-mariadb <name>`
//! line (the test doubles match on it). SQL reaches the server only through `mariadb`
//! reading stdin, as root over the local unix socket; passwords never appear in a script,
//! and the users' SQL carries only their `mysql_native_password` hashes.

use kbz_core::shell::quote;
use kbz_core::Host;

use crate::layout::{self, Layout};

/// Marker of the one-round-trip state query.
pub const GATHER: &str = "# kbz-mariadb gather";
/// Marker of the position recovery of a stopped node (`galera_recovery`).
pub const RECOVER: &str = "# kbz-mariadb recover";
/// Marker of the bootstrap of a new Primary component.
pub const BOOTSTRAP: &str = "# kbz-mariadb bootstrap";
/// Marker of the start of a node that joins the running cluster.
pub const JOIN: &str = "# kbz-mariadb join";
/// Marker of the restart of a Synced node whose configuration changed.
pub const RESTART: &str = "# kbz-mariadb restart";
/// Marker of the wait until the node is Synced in a Primary component of a given size.
pub const WAIT_SYNCED: &str = "# kbz-mariadb wait-synced";
/// Marker of the users' and database's SQL (read from stdin).
pub const USERS: &str = "# kbz-mariadb users";

/// Text every mutating script carries, so tests can assert none ran.
pub const MUTATING: &[&str] = &[BOOTSTRAP, JOIN, RESTART, USERS];

/// The status variables the gather script reads.
pub const STATUS_VARS: &[&str] = &[
    "wsrep_local_state",
    "wsrep_local_state_comment",
    "wsrep_cluster_size",
    "wsrep_cluster_status",
    "wsrep_cluster_state_uuid",
    "wsrep_last_committed",
    "wsrep_ready",
];

fn status_sql() -> String {
    let names: Vec<String> = STATUS_VARS
        .iter()
        .map(|v| format!("'{}'", v.to_ascii_uppercase()))
        .collect();
    format!(
        "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ({}) UNION ALL SELECT 'wsrep_on', @@wsrep_on",
        names.join(", ")
    )
}

/// One round trip, read-only: the server's unit state, Galera's saved state (grastate.dat),
/// the wsrep status of a running server and whether kbz's config file is newer than the
/// running server. `key=value` lines (parsed by `observe::parse_gather`).
pub fn gather(layout: &Layout, host: &Host) -> String {
    let gra = quote(&layout.path(host, layout::GRASTATE));
    let cnf = quote(&layout.path(host, layout::GALERA_CNF));
    format!(
        "{GATHER}\nstate=$({st} || true)\necho \"state=${{state:-unknown}}\"\n\
         if [ -r {gra} ]; then sed -n -e 's/^uuid:[[:space:]]*/gra_uuid=/p' -e 's/^seqno:[[:space:]]*/gra_seqno=/p' -e 's/^safe_to_bootstrap:[[:space:]]*/gra_safe=/p' {gra}; fi\n\
         if [ \"$state\" = active ]; then\n\
         {c} -e {sql} 2>&1 | sed -e 's/\\t/=/' -e 's/^/status_/'\n\
         pid=$({pid} || true)\n\
         if [ -n \"$pid\" ] && [ \"$pid\" != 0 ] && [ {cnf} -nt \"/proc/$pid\" ]; then echo stale_config=1; fi\n\
         fi\necho '@@ end'\nexit 0\n",
        st = layout.state_cmd(host),
        c = layout.client(host),
        sql = quote(&status_sql()),
        pid = layout.pid_cmd(host),
    )
}

/// Recovers the position of a stopped node from InnoDB (`galera_recovery`, which starts
/// `mariadbd --wsrep-recover` and stops it again) and prints `position=UUID:SEQNO`.
/// Read-only for the cluster: the server does not join anything.
pub fn recover(layout: &Layout, host: &Host) -> String {
    format!(
        "{RECOVER}\nout=$({r} 2>/dev/null) || {{ echo 'galera_recovery failed'; exit 1; }}\n\
         echo \"position=${{out#--wsrep_start_position=}}\"\n",
        r = layout.recover_cmd(host)
    )
}

/// Bootstraps a new Primary component on this node. With `safe`, first marks its saved
/// state safe to bootstrap (the full-cluster recovery's chosen node). Guarded on the host:
/// refuses when the server already runs.
pub fn bootstrap(layout: &Layout, host: &Host, safe: bool) -> String {
    let gra = quote(&layout.path(host, layout::GRASTATE));
    let mark = if safe {
        format!(
            "if [ -e {gra} ]; then sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' {gra}; fi\n"
        )
    } else {
        String::new()
    };
    format!(
        "{BOOTSTRAP}\nset -e\nif [ \"$({st} || true)\" = active ]; then echo 'already running: not bootstrapped'; exit 1; fi\n{mark}{b}\n",
        st = layout.state_cmd(host),
        b = layout.bootstrap_cmd(host),
    )
}

/// Starts a stopped node so it joins the running cluster (IST or SST from a donor).
pub fn join(layout: &Layout, host: &Host) -> String {
    format!(
        "{JOIN}\nset -e\nif [ \"$({st} || true)\" = active ]; then echo 'already running'; exit 0; fi\n{s}\n",
        st = layout.state_cmd(host),
        s = layout.start_cmd(host),
    )
}

/// Restarts a node to load a changed configuration (it rejoins by IST).
pub fn restart(layout: &Layout, host: &Host) -> String {
    format!(
        "{RESTART}\nset -e\n{stop}\n{start}\n",
        stop = layout.stop_cmd(host),
        start = layout.start_cmd(host),
    )
}

/// Exits 0 when the local node is Synced, in the Primary component, and the component has
/// at least `size` members.
pub fn wait_synced(layout: &Layout, host: &Host, size: usize) -> String {
    format!(
        "{WAIT_SYNCED} {size}\nout=$({c} -e {sql} 2>&1 | tr '\\t\\n' '= ')\n\
         case \" $out\" in *' wsrep_local_state_comment=Synced '*) ;; *) echo \"not synced: $out\"; exit 1;; esac\n\
         case \" $out\" in *' wsrep_cluster_status=Primary '*) ;; *) echo \"not primary: $out\"; exit 1;; esac\n\
         n=$(printf '%s\\n' \"$out\" | tr ' ' '\\n' | sed -n 's/^wsrep_cluster_size=//p')\n\
         [ \"${{n:-0}}\" -ge {size} ] || {{ echo \"cluster size ${{n:-0}} < {size}\"; exit 1; }}\n",
        c = layout.client(host),
        sql = quote(&status_sql()),
    )
}

/// The script that runs the users' SQL read from stdin (see `users::sql`).
pub fn users(layout: &Layout, host: &Host) -> String {
    format!("{USERS}\n{}\n", layout.client(host))
}
