//! The accounts and the database kbz keeps on the cluster, as one SQL session the cluster
//! step sends on stdin to a Synced node (Galera replicates it to the others):
//! - the SST user (`kbz_sst@localhost`: what `mariabackup` needs on a donor),
//! - the health-check user (`kbz_check@localhost`: may only log in and read status),
//! - the application user of `[mariadb] app_user` with every privilege on
//!   `[mariadb] app_database` only, reachable from the cluster's subnet,
//! - with ProxySQL hosts, its monitor user (`kbz_monitor`, from the subnet, status only),
//! - and no `root` account but the local one: a `root@'%'` is dropped.
//!
//! Passwords travel as `mysql_native_password` hashes only. Before acting the session
//! prints one line per difference (`create user ...`, `password ...`, `create database ...`,
//! `drop user ...`), which become the cluster changes, so a converged cluster reports none.

use kbz_core::component::{ClusterChange, ClusterChangeKind, ComponentError};
use kbz_core::{Context, Role};
use std::net::IpAddr;

use crate::password::native_hash;
use crate::{
    CHECK_USER, MONITOR_USER, SECRET_APP, SECRET_CHECK, SECRET_MONITOR, SECRET_SST, SST_USER,
};

/// One account kbz keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User name.
    pub user: String,
    /// Host part (`localhost`, `192.0.2.0/255.255.255.0`, `%`).
    pub host: String,
    /// Its `mysql_native_password` hash.
    pub hash: String,
    /// `GRANT` privileges and object (`RELOAD, PROCESS ON *.*`).
    pub grant: String,
}

/// The host part for clients of the cluster's subnet (`%` without an IPv4 subnet: MariaDB's
/// `ip/netmask` form has no IPv6 spelling).
pub fn client_host(ctx: &Context) -> String {
    match ctx.config.cluster.subnet {
        Some(net) => match (net.network(), net.netmask()) {
            (IpAddr::V4(n), IpAddr::V4(m)) => format!("{n}/{m}"),
            _ => "%".into(),
        },
        None => "%".into(),
    }
}

/// Every account of this cluster, in the order they are made.
pub fn accounts(ctx: &Context) -> Result<Vec<Account>, ComponentError> {
    let cfg = &ctx.config.mariadb;
    let h =
        |n: &str| -> Result<String, ComponentError> { Ok(native_hash(ctx.secret(n)?.expose())) };
    let mut out = vec![
        Account {
            user: SST_USER.into(),
            host: "localhost".into(),
            hash: h(SECRET_SST)?,
            grant: "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.*".into(),
        },
        Account {
            user: CHECK_USER.into(),
            host: "localhost".into(),
            hash: h(SECRET_CHECK)?,
            grant: "USAGE ON *.*".into(),
        },
        Account {
            user: cfg.app_user.clone(),
            host: client_host(ctx),
            hash: h(SECRET_APP)?,
            grant: format!("ALL PRIVILEGES ON `{}`.*", cfg.app_database),
        },
    ];
    if !ctx.inventory.with_role(Role::Proxysql).is_empty() {
        out.push(Account {
            user: MONITOR_USER.into(),
            host: client_host(ctx),
            hash: h(SECRET_MONITOR)?,
            grant: "USAGE ON *.*".into(),
        });
    }
    Ok(out)
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The SQL session (for `mariadb` on stdin). Names come from allow-listed config values
/// (`[mariadb] app_user` / `app_database`) and constants; hashes are hex.
pub fn sql(ctx: &Context) -> Result<String, ComponentError> {
    let accounts = accounts(ctx)?;
    let db = &ctx.config.mariadb.app_database;
    let mut s = String::from("SET SESSION sql_log_off = 1;\n");
    // The report of differences, before anything changes.
    for a in &accounts {
        let (u, h) = (lit(&a.user), lit(&a.host));
        s.push_str(&format!(
            "SELECT CONCAT('create user ', {u}, '@', {h}) FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM mysql.user WHERE User = {u} AND Host = {h});\n\
             SELECT CONCAT('password ', {u}, '@', {h}) FROM mysql.user WHERE User = {u} AND Host = {h} AND authentication_string <> {hash};\n",
            hash = lit(&a.hash),
        ));
    }
    s.push_str(&format!(
        "SELECT CONCAT('create database ', {d}) FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {d});\n\
         SELECT 'drop user root@%' FROM mysql.user WHERE User = 'root' AND Host = '%';\n",
        d = lit(db)
    ));
    // The changes themselves, idempotent.
    s.push_str(&format!("CREATE DATABASE IF NOT EXISTS `{db}`;\n"));
    for a in &accounts {
        let who = format!("{}@{}", lit(&a.user), lit(&a.host));
        s.push_str(&format!(
            "CREATE USER IF NOT EXISTS {who} IDENTIFIED BY PASSWORD {h};\n\
             ALTER USER {who} IDENTIFIED BY PASSWORD {h};\n\
             GRANT {g} TO {who};\n",
            h = lit(&a.hash),
            g = a.grant,
        ));
    }
    s.push_str("DROP USER IF EXISTS 'root'@'%';\n");
    Ok(s)
}

/// What the session's report lines say was changed on `host`.
pub fn changes(host: &str, stdout: &str) -> Vec<ClusterChange> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| {
            [
                "create user ",
                "password ",
                "create database ",
                "drop user ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| ClusterChange::new(ClusterChangeKind::Create, host, l.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_become_changes_and_nothing_else_does() {
        let c = changes(
            "mq1",
            "create user kbz_sst@localhost\npassword app@192.0.2.0/255.255.255.0\nwarning\n",
        );
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|x| x.kind == ClusterChangeKind::Create));
        assert!(changes("mq1", "").is_empty());
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(lit("a'b\\c"), "'a\\'b\\\\c'");
    }
}
