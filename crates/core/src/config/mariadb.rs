//! `[mariadb]`: the application user and database kbz-mariadb creates (module 8), and the
//! check that a `proxysql` host has its pinned package (`[artifacts.proxysql]`).

use kbz_errors::{Code, Diagnostic};
use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, Role};

/// The keys of `[mariadb]`.
pub const KEYS: &[&str] = &["app_user", "app_database"];

/// `[mariadb]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MariadbConfig {
    /// The application user clients log in as (password: the generated
    /// `mariadb_app_password` secret), from the cluster's subnet, with every privilege on
    /// [`MariadbConfig::app_database`] only.
    pub app_user: String,
    /// The application database.
    pub app_database: String,
}

impl Default for MariadbConfig {
    fn default() -> Self {
        MariadbConfig {
            app_user: "app".into(),
            app_database: "app".into(),
        }
    }
}

/// A user or database name kbz passes to MariaDB: 1-32 of lowercase letters, digits and `_`,
/// starting with a letter; not `root`, `mysql` nor one of kbz's own accounts (`kbz_...`),
/// nor a system schema.
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "{what} `{}` must be 1-32 lowercase letters, digits or `_`, starting with a letter",
            s.escape_default()
        ));
    }
    if s.starts_with("kbz_")
        || matches!(
            s,
            "root" | "mysql" | "mariadb.sys" | "information_schema" | "performance_schema" | "sys"
        )
    {
        return Err(format!(
            "{what} `{s}` is reserved (by MariaDB or by kbz's own accounts)"
        ));
    }
    Ok(())
}

/// E008 for a `proxysql` host without `[artifacts.proxysql]`: ProxySQL is installed only
/// from a package whose sha256 the operator pinned.
pub fn check_proxysql_pin(inv: &Inventory, cfg: &crate::Config, path: &str) -> Vec<Diagnostic> {
    let hosts: Vec<&str> = inv
        .with_role(Role::Proxysql)
        .iter()
        .map(|h| h.hostname.as_str())
        .collect();
    if hosts.is_empty() || cfg.artifacts.contains_key("proxysql") {
        return Vec::new();
    }
    vec![Diagnostic::new(
        Code::E008,
        format!(
            "{} ha{} the proxysql role, but ProxySQL is not pinned",
            hosts.join(", "),
            if hosts.len() == 1 { "s" } else { "ve" }
        ),
    )
    .at(path, None)
    .hint(
        "add `[artifacts.proxysql]` with `version = \"2.7.1\"` and `sha256 = \"<sha256sum of \
         proxysql_2.7.1-debian12_amd64.deb>\"` (and `source = \"file:///srv/kbz/...\"` or an \
         https mirror), or remove the proxysql role",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_allow_listed() {
        assert!(check_name("[mariadb] app_user", "app").is_ok());
        assert!(check_name("[mariadb] app_database", "shop_eu1").is_ok());
        for bad in [
            "",
            "App",
            "1app",
            "a b",
            "a-b",
            "a'b",
            "a`b",
            "root",
            "mysql",
            "kbz_sst",
            "sys",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(check_name("[mariadb] app_user", bad).is_err(), "{bad}");
        }
    }
}
