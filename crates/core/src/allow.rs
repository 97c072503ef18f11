//! Allow-lists for the values of servers.tsv and kbz.toml that reach a file or a command on a
//! host (an apt proxy, package names, NTP servers, interface names, versions, URLs). Each
//! check says what is wrong in one sentence; the validation layer turns it into an E-coded
//! `Diagnostic` with the file, the line and a fix. Values are accepted only when every
//! character is on the list, so quotes, newlines, NUL, `}`, `#`, `$(`, backticks and spaces
//! never reach a template or a shell, and no value can start with `-` (an option).

use std::net::IpAddr;

/// A character as a message shows it: `'` `"` as themselves, control characters escaped.
pub fn shown(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        c if c.is_control() || !c.is_ascii() => format!("`{}`", c.escape_default()),
        c => format!("`{c}`"),
    }
}

fn first_bad(s: &str, ok: impl Fn(char) -> bool) -> Option<char> {
    s.chars().find(|&c| !ok(c))
}

fn not_option(what: &str, s: &str) -> Result<(), String> {
    if s.starts_with('-') {
        Err(format!("{what} `{}` starts with `-`", s.escape_default()))
    } else {
        Ok(())
    }
}

/// A DNS name: labels of ASCII letters, digits and hyphens (1-63, no hyphen at either end),
/// joined by dots, 253 characters at most.
pub fn dns_name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > 253 {
        return Err(format!(
            "{what} is {} characters long; at most 253",
            s.len()
        ));
    }
    if let Some(c) = first_bad(s, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')) {
        return Err(format!(
            "{what} `{}` contains {}, which a DNS name cannot hold",
            s.escape_default(),
            shown(c)
        ));
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "{what} `{s}` has an empty or over-long label (1-63 characters between dots)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{what} `{s}` has a label starting or ending with `-`"
            ));
        }
    }
    Ok(())
}

/// An NTP server: an IP address or a DNS name.
pub fn ntp_server(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    dns_name("NTP server", s)
}

/// A Debian package name (Debian Policy 5.6.1): lowercase letters, digits, `+`, `-` and `.`,
/// at least two characters, starting with a letter or digit.
pub fn debian_package(s: &str) -> Result<(), String> {
    not_option("package", s)?;
    if let Some(c) = first_bad(s, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
    }) {
        return Err(format!(
            "package `{}` contains {}, which a Debian package name cannot hold",
            s.escape_default(),
            shown(c)
        ));
    }
    if s.len() < 2 || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "package `{s}` is not a Debian package name (two characters or more, starting with \
             a letter or digit)"
        ));
    }
    Ok(())
}

/// An `http://` or `https://` URL of the form `scheme://host[:port][/path]`: the host a DNS
/// name, an IPv4 address or a bracketed IPv6 address; the path of letters, digits and
/// `-._~/%`; no user, password, query or fragment.
pub fn http_url(what: &str, s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "{what} `{}` is not an http:// or https:// URL",
            s.escape_default()
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "{what} `{}` is not an http:// or https:// URL",
            s.escape_default()
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if let Some(c) = first_bad(path, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/' | '%')
    }) {
        return Err(format!(
            "{what} `{}` contains {} in its path",
            s.escape_default(),
            shown(c)
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "{what} `{}` holds a user or password; kbz.toml takes none",
            s.escape_default()
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!(
                "{what} `{}` has an unclosed `[`",
                s.escape_default()
            ));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{what} `{}` has `[{}]`, which is not an IPv6 address",
                s.escape_default(),
                addr.escape_default()
            ));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => {
                    return Err(format!(
                        "{what} `{}` has text after its IPv6 address",
                        s.escape_default()
                    ))
                }
            },
        };
        (None, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        }
    };
    if let Some(h) = host {
        if h.parse::<std::net::Ipv4Addr>().is_err() {
            dns_name(&format!("the host of {what}"), h)?;
        }
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Err(format!(
                "{what} `{}` has port `{}`, not a number from 1 to 65535",
                s.escape_default(),
                p.escape_default()
            ));
        }
    }
    Ok(())
}

/// A Linux network interface name: 1-15 letters, digits, `.`, `_` or `-`, not starting with
/// `-` and not `.` or `..`.
pub fn interface(s: &str) -> Result<(), String> {
    not_option("iface", s)?;
    if let Some(c) = first_bad(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    }) {
        return Err(format!(
            "iface `{}` contains {}, which an interface name cannot hold",
            s.escape_default(),
            shown(c)
        ));
    }
    if s.is_empty() || s.len() > 15 || s == "." || s == ".." {
        return Err(format!(
            "iface `{s}` is not an interface name (1-15 characters, as `ip -brief link` shows them)"
        ));
    }
    Ok(())
}

/// A label value of servers.tsv: letters, digits and `.`, `_`, `-`, `:`, `/`, `@`, `+`, not
/// starting with `-`; it may be empty.
pub fn label_value(key: &str, s: &str) -> Result<(), String> {
    not_option(&format!("label {key}"), s)?;
    if let Some(c) = first_bad(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+')
    }) {
        return Err(format!(
            "label `{key}` has a value with {}, which labels cannot hold",
            shown(c)
        ));
    }
    Ok(())
}

/// A version string (`15`, `4.1.5`, `v1.31.4+k3s1`, `1.31.4-1.1`, `1:2.3~rc1`): 1-64
/// letters, digits and `.`, `+`, `~`, `_`, `:`, `-`, starting with a letter or digit.
pub fn version(what: &str, s: &str) -> Result<(), String> {
    if let Some(c) = first_bad(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '_' | ':' | '-')
    }) {
        return Err(format!(
            "{what} `{}` contains {}, which a version cannot hold",
            s.escape_default(),
            shown(c)
        ));
    }
    if s.is_empty() || s.len() > 64 || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{what} `{s}` is not a version (1-64 characters, starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// A cluster name: 1-63 letters, digits, spaces, `.`, `_` and `-`, starting and ending with a
/// letter or digit. Components use its slug; notifications show it as written.
pub fn cluster_name(s: &str) -> Result<(), String> {
    if let Some(c) = first_bad(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-')
    }) {
        return Err(format!(
            "[cluster] name `{}` contains {}, which a cluster name cannot hold",
            s.escape_default(),
            shown(c)
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if s.len() > 63 || !edge_ok(s.chars().next()) || !edge_ok(s.chars().last()) {
        return Err(format!(
            "[cluster] name `{s}` must be 1-63 characters starting and ending with a letter or \
             digit"
        ));
    }
    Ok(())
}

/// Roles kbz's PostgreSQL cluster keeps for itself (Patroni's superuser, replication and
/// rewind users).
pub const PG_RESERVED_ROLES: &[&str] = &["postgres", "replicator", "rewind_user"];

/// A PostgreSQL role or database name kbz creates: 1-63 lowercase letters, digits and `_`,
/// starting with a letter or `_`, not `pg_...` (reserved by PostgreSQL) and none of
/// [`PG_RESERVED_ROLES`] or PostgreSQL's template databases. Such a name needs no quoting in
/// SQL, pg_hba or a connection string.
pub fn pg_name(what: &str, s: &str) -> Result<(), String> {
    if let Some(c) = first_bad(s, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    }) {
        return Err(format!(
            "{what} `{}` contains {}, which a PostgreSQL name kbz creates cannot hold",
            s.escape_default(),
            shown(c)
        ));
    }
    if s.is_empty() || s.len() > 63 || s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{what} `{s}` must be 1-63 characters starting with a lowercase letter or `_`"
        ));
    }
    if s.starts_with("pg_")
        || PG_RESERVED_ROLES.contains(&s)
        || matches!(
            s,
            "template0" | "template1" | "all" | "replication" | "public"
        )
    {
        return Err(format!(
            "{what} `{s}` is reserved (by PostgreSQL or by kbz's cluster)"
        ));
    }
    Ok(())
}

/// A file path on the controller: no NUL, newline or other control character.
pub fn local_path(what: &str, s: &str) -> Result<(), String> {
    match first_bad(s, |c| !c.is_control()) {
        Some(c) => Err(format!("{what} contains {}", shown(c))),
        None if s.is_empty() => Err(format!("{what} is empty")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values every allow-list must refuse: quotes, newlines, options, NUL, `}`, `#`, `$(`,
    /// backticks, spaces.
    pub(crate) const HOSTILE: &[&str] = &[
        "a\"b",
        "a'b",
        "a\nb",
        "-oProxy=x",
        "a\0b",
        "a}b",
        "a#b",
        "$(id)",
        "`id`",
        "a b",
        "a;b",
        "a\\b",
    ];

    #[test]
    fn pg_names_are_plain_identifiers_and_not_reserved() {
        for ok in ["app", "shop_2", "_x", &"a".repeat(63)] {
            assert!(pg_name("n", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "App",
            "2app",
            "a-b",
            "a.b",
            "pg_monitor",
            "postgres",
            "replicator",
            "rewind_user",
            "template1",
            "all",
            "replication",
            &"a".repeat(64),
        ] {
            assert!(pg_name("n", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_list_refuses_every_hostile_value() {
        for v in HOSTILE {
            assert!(dns_name("x", v).is_err(), "dns {v:?}");
            assert!(ntp_server(v).is_err(), "ntp {v:?}");
            assert!(debian_package(v).is_err(), "pkg {v:?}");
            assert!(interface(v).is_err(), "iface {v:?}");
            assert!(label_value("k", v).is_err(), "label {v:?}");
            assert!(version("v", v).is_err(), "version {v:?}");
            assert!(pg_name("n", v).is_err(), "pg name {v:?}");
            let url = format!("http://proxy{v}:3142/");
            assert!(http_url("u", &url).is_err(), "url {url:?}");
            let url = format!("http://proxy:3142/{v}");
            assert!(http_url("u", &url).is_err(), "url path {url:?}");
        }
        for v in HOSTILE.iter().filter(|v| **v != "a b") {
            assert!(cluster_name(v).is_err(), "name {v:?}");
        }
        assert!(local_path("p", "a\0b").is_err() && local_path("p", "a\nb").is_err());
    }

    #[test]
    fn ordinary_values_pass() {
        dns_name("x", "ntp1.example.org").expect("dns");
        ntp_server("192.0.2.1").expect("v4");
        ntp_server("2001:db8::1").expect("v6");
        for p in ["htop", "postgresql-16", "libstdc++6", "g++", "python3.11"] {
            debian_package(p).expect(p);
        }
        for u in [
            "http://192.0.2.5:3142",
            "http://apt-cacher.example.internal:3142/",
            "https://[2001:db8::5]:5000/v2/mirror",
            "https://registry.example.internal",
        ] {
            http_url("u", u).expect(u);
        }
        for i in ["eth0", "ens18", "bond0.100", "br-lan", "enp0s31f6"] {
            interface(i).expect(i);
        }
        label_value("zone", "eu-west-1a").expect("zone");
        label_value("empty", "").expect("empty");
        for v in ["15", "4.1.5", "v1.31.4+k3s1", "1.31.4-1.1", "1:2.3~rc1"] {
            version("v", v).expect(v);
        }
        for n in ["kbz", "Prod EU", "prod_2.eu-west"] {
            cluster_name(n).expect(n);
        }
    }

    #[test]
    fn options_and_shapes_are_refused() {
        assert!(debian_package("-y").is_err());
        assert!(debian_package("a").is_err());
        assert!(debian_package("Htop").is_err());
        assert!(interface("-eth0").is_err());
        assert!(interface("averyveryverylongname").is_err());
        assert!(ntp_server("-4").is_err());
        assert!(version("v", "-1").is_err());
        assert!(label_value("k", "-x").is_err());
        assert!(http_url("u", "ftp://x").is_err());
        assert!(http_url("u", "http://user:pw@proxy:3142").is_err());
        assert!(http_url("u", "http://proxy:0").is_err());
        assert!(http_url("u", "http://proxy:3142?x=1").is_err());
        assert!(http_url("u", "http://[::1").is_err());
        assert!(cluster_name(" x").is_err() && cluster_name("").is_err());
    }
}
