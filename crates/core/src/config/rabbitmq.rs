//! `[rabbitmq]`: the application user and vhost kbz-rabbitmq creates (module 7).

use serde::{Deserialize, Serialize};

/// The keys of `[rabbitmq]`.
pub const KEYS: &[&str] = &["app_user", "vhost"];

/// `[rabbitmq]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitmqConfig {
    /// The application user clients log in as (password: the generated
    /// `rabbitmq_app_password` secret); full permissions on [`RabbitmqConfig::vhost`] only.
    pub app_user: String,
    /// The application vhost, created with default queue type `quorum`.
    pub vhost: String,
}

impl Default for RabbitmqConfig {
    fn default() -> Self {
        RabbitmqConfig {
            app_user: "app".into(),
            vhost: "app".into(),
        }
    }
}

/// A user or vhost name kbz passes to rabbitmqctl: 1-63 of lowercase letters, digits, `_`
/// and `-`, starting with a letter; not `guest` (deleted) nor kbz's admin user.
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !ok {
        return Err(format!(
            "{what} `{}` must be 1-63 lowercase letters, digits, `_` or `-`, starting with a letter",
            s.escape_default()
        ));
    }
    if matches!(s, "guest" | "kbz_admin") {
        return Err(format!(
            "{what} `{s}` is reserved (guest is deleted; kbz_admin is kbz's)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_allow_listed() {
        assert!(check_name("[rabbitmq] vhost", "app").is_ok());
        assert!(check_name("[rabbitmq] vhost", "shop-eu_1").is_ok());
        for bad in [
            "",
            "App",
            "1app",
            "a b",
            "a/b",
            "guest",
            "kbz_admin",
            "-x",
            "a'b",
        ] {
            assert!(check_name("[rabbitmq] app_user", bad).is_err(), "{bad}");
        }
    }
}
