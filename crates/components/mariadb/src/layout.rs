//! Where MariaDB lives on a host: file paths, ports and the commands that start, bootstrap
//! and stop it. Real hosts use [`Layout::debian`] (Debian 12's mariadb-server 10.11 under
//! systemd); the loopback test runs three "hosts" on one machine with [`Layout::loopback`],
//! every path under a per-host directory and the daemons started without systemd.

use kbz_core::shell::quote;
use kbz_core::Host;
use std::path::PathBuf;

/// kbz's Galera settings, read after Debian's `50-server.cnf` (so its `bind-address` wins).
pub const GALERA_CNF: &str = "/etc/mysql/mariadb.conf.d/60-kbz-galera.cnf";
/// The client option file of the health-check user (read by the clustercheck service).
pub const CHECK_CNF: &str = "/etc/mysql/kbz-clustercheck.cnf";
/// The clustercheck script: HTTP 200 only on a Synced node.
pub const CLUSTERCHECK: &str = "/usr/local/lib/kbz/mariadb-clustercheck";
/// The clustercheck's unit: socat on port 9200 of the host's address, the script per connection.
pub const CHECK_UNIT: &str = "/etc/systemd/system/kbz-clustercheck.service";
/// The clustercheck's unit name.
pub const CHECK_SERVICE: &str = "kbz-clustercheck";
/// MariaDB's data directory.
pub const DATA_DIR: &str = "/var/lib/mysql";
/// Galera's saved state (uuid, seqno, safe_to_bootstrap).
pub const GRASTATE: &str = "/var/lib/mysql/grastate.dat";
/// The server's unix socket.
pub const SOCKET: &str = "/run/mysqld/mysqld.sock";
/// The Debian unit.
pub const SERVICE: &str = "mariadb";
/// Debian's socket-activation unit (`ListenStream=3306` on every address), kept disabled.
pub const SOCKET_UNIT: &str = "mariadb.socket";

/// Paths, ports and process control of the MariaDB nodes of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `None` on real hosts; in loopback tests every path is prefixed with `root/<hostname>`.
    pub root: Option<PathBuf>,
    /// SQL port.
    pub port: u16,
    /// Galera replication port (gcomm).
    pub galera_port: u16,
    /// Incremental state transfer port.
    pub ist_port: u16,
    /// State snapshot transfer port (mariabackup through socat).
    pub sst_port: u16,
    /// The clustercheck's HTTP port.
    pub check_port: u16,
}

impl Layout {
    /// Debian 12's packages under systemd: 3306, 4567, 4568, 4444 and the check on 9200.
    pub fn debian() -> Self {
        Layout {
            root: None,
            port: 3306,
            galera_port: 4567,
            ist_port: 4568,
            sst_port: 4444,
            check_port: 9200,
        }
    }

    /// Nodes of several "hosts" on one machine: paths under `root/<hostname>`, the daemons
    /// run as child processes (no systemd), bound to the inventory (loopback) address.
    pub fn loopback(root: PathBuf, port: u16, galera_port: u16) -> Self {
        Layout {
            root: Some(root),
            port,
            galera_port,
            ist_port: galera_port + 1,
            sst_port: galera_port + 2,
            check_port: 9200,
        }
    }

    /// A path of the real layout, moved under the host's root in loopback tests.
    pub fn path(&self, host: &Host, p: &str) -> String {
        match &self.root {
            None => p.to_string(),
            Some(r) => format!("{}/{}{}", r.display(), host.hostname, p),
        }
    }

    /// `--defaults-file=...` for the loopback layout (whose config is the whole file), empty
    /// on real hosts (Debian's /etc/mysql/my.cnf includes kbz's file).
    fn defaults(&self, host: &Host) -> String {
        match &self.root {
            None => String::new(),
            Some(_) => format!(" --defaults-file={}", quote(&self.path(host, GALERA_CNF))),
        }
    }

    /// The `mariadb` client as root over the local unix socket (unix_socket authentication),
    /// batch mode, no column names.
    pub fn client(&self, host: &Host) -> String {
        format!("timeout 20 mariadb{} -N -B", self.defaults(host))
    }

    /// Prints `active`, `activating`, `inactive`, `failed`... for the node's server.
    pub fn state_cmd(&self, host: &Host) -> String {
        match &self.root {
            None => format!("systemctl is-active {SERVICE}.service 2>/dev/null"),
            Some(_) => format!(
                "p=$(cat {} 2>/dev/null); if [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null; then echo active; else echo inactive; fi",
                quote(&self.path(host, "/run/mysqld/mysqld.pid"))
            ),
        }
    }

    /// The pid of the running server (empty when none), for the stale-configuration check.
    pub fn pid_cmd(&self, host: &Host) -> String {
        match &self.root {
            None => format!("systemctl show -p MainPID --value {SERVICE}.service 2>/dev/null"),
            Some(_) => format!(
                "cat {} 2>/dev/null",
                quote(&self.path(host, "/run/mysqld/mysqld.pid"))
            ),
        }
    }

    /// Starts the node as a member that joins the cluster (recovering its position first).
    pub fn start_cmd(&self, host: &Host) -> String {
        match &self.root {
            None => format!("systemctl start {SERVICE}.service"),
            Some(_) => self.spawn(host, ""),
        }
    }

    /// Starts the node as the first member of a new Primary component; on real hosts tried
    /// three times ([`kbz_core::shell::retried_start`]: a start right after the servers
    /// were killed can fail while systemd still removes the old control group).
    pub fn bootstrap_cmd(&self, host: &Host) -> String {
        match &self.root {
            None => kbz_core::shell::retried_start("galera_new_cluster"),
            Some(_) => self.spawn(host, " --wsrep-new-cluster"),
        }
    }

    /// Stops the node (waits until it is down).
    pub fn stop_cmd(&self, host: &Host) -> String {
        match &self.root {
            None => format!("systemctl stop {SERVICE}.service"),
            Some(_) => format!(
                "p=$(cat {} 2>/dev/null); [ -z \"$p\" ] || {{ kill \"$p\" 2>/dev/null; i=0; while kill -0 \"$p\" 2>/dev/null && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done; }}",
                quote(&self.path(host, "/run/mysqld/mysqld.pid"))
            ),
        }
    }

    /// Prints `--wsrep_start_position=UUID:SEQNO` recovered from InnoDB (Galera's own
    /// `galera_recovery`, what Debian's unit runs before every start).
    pub fn recover_cmd(&self, host: &Host) -> String {
        format!("galera_recovery{}", self.defaults(host))
    }

    /// The loopback start: the daemon in the background, detached, after position recovery,
    /// as Debian's unit does it.
    fn spawn(&self, host: &Host, extra: &str) -> String {
        let d = self.defaults(host);
        let log = quote(&self.path(host, "/var/log/mysql/mariadbd.out"));
        format!(
            "pos=$(galera_recovery{d}) || exit 1\n\
             setsid mariadbd{d}{extra} $pos >>{log} 2>&1 </dev/null &\n\
             i=0; until {state} | grep -qx active && [ -S {sock} ]; do i=$((i+1)); [ $i -gt 600 ] && {{ echo 'mariadbd did not start'; exit 1; }}; sleep 0.5; done",
            state = self.state_cmd(host),
            sock = quote(&self.path(host, SOCKET)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Role;

    #[test]
    fn debian_uses_systemd_and_the_packaged_paths() {
        let h = Host::new("mq1", "192.0.2.31".parse().expect("ip"), &[Role::Mariadb]);
        let l = Layout::debian();
        assert_eq!(l.path(&h, GALERA_CNF), GALERA_CNF);
        assert_eq!(l.client(&h), "timeout 20 mariadb -N -B");
        assert_eq!(
            l.bootstrap_cmd(&h),
            kbz_core::shell::retried_start("galera_new_cluster")
        );
        assert_eq!(l.recover_cmd(&h), "galera_recovery");
    }

    #[test]
    fn loopback_moves_paths_under_the_host_root() {
        let h = Host::new("n2", "127.0.0.22".parse().expect("ip"), &[Role::Mariadb]);
        let l = Layout::loopback(PathBuf::from("/tmp/x"), 13306, 14567);
        assert_eq!(l.path(&h, GRASTATE), "/tmp/x/n2/var/lib/mysql/grastate.dat");
        assert!(l
            .client(&h)
            .contains("--defaults-file='/tmp/x/n2/etc/mysql/"));
        assert!(l.bootstrap_cmd(&h).contains("--wsrep-new-cluster"));
        assert_eq!((l.ist_port, l.sst_port), (14568, 14569));
    }
}
