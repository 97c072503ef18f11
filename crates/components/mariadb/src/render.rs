//! Every file kbz renders for a MariaDB Galera node: the Galera settings (with the SST
//! user's password), the health-check user's client file, the clustercheck script and its
//! systemd socket and service. Pure: the same inputs give the same bytes.

use kbz_core::component::ComponentError;
use kbz_core::net::host_port;
use kbz_core::{template, Context, Host, Role};
use kbz_errors::{Code, Diagnostic};
use serde_json::json;

use crate::layout::{self, Layout};
use crate::{CHECK_USER, SECRET_CHECK, SECRET_SST, SST_USER};

const GALERA_T: &str = include_str!("../templates/60-kbz-galera.cnf.hbs");
const CHECK_CNF_T: &str = include_str!("../templates/kbz-clustercheck.cnf.hbs");
const CLUSTERCHECK_T: &str = include_str!("../templates/mariadb-clustercheck.sh.hbs");
const UNIT_T: &str = include_str!("../templates/kbz-clustercheck.service.hbs");

/// Owner of the files holding a password the server or the check reads.
pub const SECRET_OWNER: &str = "root:mysql";

/// One file with its content, mode and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path.
    pub path: String,
    /// Content.
    pub content: String,
    /// Permission bits.
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
}

/// The MariaDB hosts of the inventory, in inventory order (the first bootstraps a new cluster).
pub fn mariadb_hosts(ctx: &Context) -> Vec<&Host> {
    ctx.inventory.with_role(Role::Mariadb)
}

/// Quotes a value for an option file (double quotes, backslash escapes). Control characters
/// cannot be carried: E052 naming the secret.
pub fn cnf_quote(name: &str, value: &str) -> Result<String, ComponentError> {
    let mut o = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => {
                return Err(ComponentError::Input(
                    Diagnostic::new(
                        Code::E052,
                        format!("secret `{name}` holds control characters"),
                    )
                    .hint(format!(
                        "set `{name}` to letters and digits in the secrets file, or delete the \
                         line to have one generated"
                    )),
                ))
            }
            c => o.push(c),
        }
    }
    Ok(o)
}

/// kbz's Galera settings for a host (holds the SST password).
pub fn galera_cnf(ctx: &Context, host: &Host, layout: &Layout) -> Result<String, ComponentError> {
    let peers: Vec<String> = mariadb_hosts(ctx)
        .iter()
        .map(|h| host_port(h.ip, layout.galera_port))
        .collect();
    let sst = ctx.secret(SECRET_SST)?;
    let p = |x: &str| layout.path(host, x);
    template::render(
        "60-kbz-galera.cnf.hbs",
        GALERA_T,
        &json!({
            "hostname": host.hostname,
            "loopback": layout.root.is_some(),
            "socket": p(layout::SOCKET),
            "datadir": p(layout::DATA_DIR),
            "pidfile": p("/run/mysqld/mysqld.pid"),
            "logerror": p("/var/log/mysql/error.log"),
            "port": layout.port,
            "ip": host.ip.to_string(),
            "cluster_name": ctx.config.cluster.slug(),
            "peers": peers.join(","),
            "node_address": host_port(host.ip, layout.galera_port),
            "listen": host_port(host.ip, layout.galera_port),
            "ist": host_port(host.ip, layout.ist_port),
            "sst": host_port(host.ip, layout.sst_port),
            "sst_user": SST_USER,
            "sst_password": cnf_quote(SECRET_SST, sst.expose())?,
        }),
    )
}

/// The health-check user's client option file.
pub fn check_cnf(ctx: &Context, host: &Host, layout: &Layout) -> Result<String, ComponentError> {
    let pw = ctx.secret(SECRET_CHECK)?;
    template::render(
        "kbz-clustercheck.cnf.hbs",
        CHECK_CNF_T,
        &json!({
            "hostname": host.hostname,
            "user": CHECK_USER,
            "password": cnf_quote(SECRET_CHECK, pw.expose())?,
            "socket": layout.path(host, layout::SOCKET),
        }),
    )
}

/// The clustercheck script.
pub fn clustercheck(host: &Host, layout: &Layout) -> Result<String, ComponentError> {
    template::render(
        "mariadb-clustercheck.sh.hbs",
        CLUSTERCHECK_T,
        &json!({
            "hostname": host.hostname,
            "check_port": layout.check_port,
            "check_cnf": layout.path(host, layout::CHECK_CNF),
        }),
    )
}

/// The command line of the clustercheck's unit: socat listening on the host's address,
/// forking the check script per connection.
pub fn check_exec_start(host: &Host, layout: &Layout) -> String {
    let bind = match host.ip {
        std::net::IpAddr::V4(a) => format!("TCP4-LISTEN:{},bind={a}", layout.check_port),
        std::net::IpAddr::V6(a) => format!("TCP6-LISTEN:{},bind=[{a}]", layout.check_port),
    };
    format!(
        "/usr/bin/socat {bind},reuseaddr,fork EXEC:{}",
        layout.path(host, layout::CLUSTERCHECK)
    )
}

/// The clustercheck's unit.
pub fn check_unit(host: &Host, layout: &Layout) -> Result<String, ComponentError> {
    template::render(
        "kbz-clustercheck.service.hbs",
        UNIT_T,
        &json!({
            "hostname": host.hostname,
            "listen": host_port(host.ip, layout.check_port),
            "exec_start": check_exec_start(host, layout),
        }),
    )
}

/// Every file kbz owns on a MariaDB host, in the order they are written.
pub fn files(
    ctx: &Context,
    host: &Host,
    layout: &Layout,
) -> Result<Vec<RenderedFile>, ComponentError> {
    let f = |p: &str, content: String, mode: u32, owner: &str| RenderedFile {
        path: layout.path(host, p),
        content,
        mode,
        owner: owner.into(),
    };
    Ok(vec![
        f(
            layout::GALERA_CNF,
            galera_cnf(ctx, host, layout)?,
            0o640,
            SECRET_OWNER,
        ),
        f(
            layout::CHECK_CNF,
            check_cnf(ctx, host, layout)?,
            0o640,
            SECRET_OWNER,
        ),
        f(
            layout::CLUSTERCHECK,
            clustercheck(host, layout)?,
            0o755,
            "root:root",
        ),
        f(
            layout::CHECK_UNIT,
            check_unit(host, layout)?,
            0o644,
            "root:root",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_file_quoting_escapes_and_refuses_control_characters() {
        assert_eq!(cnf_quote("s", "ab\"c\\d").expect("ok"), "ab\\\"c\\\\d");
        assert!(cnf_quote("s", "a\nb").is_err());
    }
}
