//! The inventory (`servers.tsv`): hosts with addresses, roles, SSH settings and labels.
//! Parsing and validation report every problem at once, each as an E-coded `Diagnostic` with
//! `file:line`. The file format is a user-facing contract documented in docs/inventory.md.

use kbz_errors::{Code, Diagnostic};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// A role a host plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// keepalived + HAProxy.
    Lb,
    /// etcd member.
    Etcd,
    /// PostgreSQL + Patroni.
    Postgres,
    /// Redis + Sentinel.
    Redis,
    /// RabbitMQ.
    Rabbitmq,
    /// MariaDB Galera.
    Mariadb,
    /// ProxySQL.
    Proxysql,
    /// MinIO.
    Minio,
    /// Kubernetes control plane.
    K8sMaster,
    /// Kubernetes worker.
    K8sWorker,
    /// Prometheus + Grafana.
    Monitoring,
    /// Backup runner.
    Backup,
}

impl Role {
    /// Every role, in inventory spelling order.
    pub const ALL: &'static [Role] = &[
        Role::Lb,
        Role::Etcd,
        Role::Postgres,
        Role::Redis,
        Role::Rabbitmq,
        Role::Mariadb,
        Role::Proxysql,
        Role::Minio,
        Role::K8sMaster,
        Role::K8sWorker,
        Role::Monitoring,
        Role::Backup,
    ];

    /// The spelling used in servers.tsv.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lb => "lb",
            Role::Etcd => "etcd",
            Role::Postgres => "postgres",
            Role::Redis => "redis",
            Role::Rabbitmq => "rabbitmq",
            Role::Mariadb => "mariadb",
            Role::Proxysql => "proxysql",
            Role::Minio => "minio",
            Role::K8sMaster => "k8s-master",
            Role::K8sWorker => "k8s-worker",
            Role::Monitoring => "monitoring",
            Role::Backup => "backup",
        }
    }

    /// Parses the servers.tsv spelling.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Roles whose members form a quorum: an odd count of at least 3 is required.
    pub fn needs_quorum(self) -> bool {
        matches!(
            self,
            Role::Etcd
                | Role::Postgres
                | Role::Redis
                | Role::Rabbitmq
                | Role::Mariadb
                | Role::K8sMaster
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Short hostname (also set on the host by module 1).
    pub hostname: String,
    /// Private address kbz connects to and services bind to.
    pub ip: IpAddr,
    /// Roles.
    pub roles: BTreeSet<Role>,
    /// SSH user (default `root`).
    pub ssh_user: String,
    /// SSH port (default 22).
    pub ssh_port: u16,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// 1-based line in the inventory file.
    pub line: usize,
}

impl Host {
    /// A root@ip:22 host with roles, for tests and tools.
    pub fn new(hostname: &str, ip: IpAddr, roles: &[Role]) -> Self {
        Host {
            hostname: hostname.into(),
            ip,
            roles: roles.iter().copied().collect(),
            ssh_user: "root".into(),
            ssh_port: 22,
            labels: BTreeMap::new(),
            line: 0,
        }
    }

    /// True when the host has the role.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The parsed inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The file it came from, as the user named it.
    pub path: String,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
}

impl Inventory {
    /// Hosts with a role, in file order.
    pub fn with_role(&self, role: Role) -> Vec<&Host> {
        self.hosts.iter().filter(|h| h.has(role)).collect()
    }

    /// A host by name.
    pub fn host(&self, hostname: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.hostname == hostname)
    }
}

/// The columns of servers.tsv, in order. The first three are required.
pub const COLUMNS: [&str; 6] = ["hostname", "ip", "roles", "ssh_user", "ssh_port", "labels"];

/// How many leading columns every host line must have.
const REQUIRED_COLUMNS: usize = 3;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Other names people use for a role, mapped to the kbz spelling (for suggestions only).
const ROLE_ALIASES: &[(&str, Role)] = &[
    ("haproxy", Role::Lb),
    ("keepalived", Role::Lb),
    ("loadbalancer", Role::Lb),
    ("load-balancer", Role::Lb),
    ("postgresql", Role::Postgres),
    ("patroni", Role::Postgres),
    ("pg", Role::Postgres),
    ("sentinel", Role::Redis),
    ("rabbit", Role::Rabbitmq),
    ("galera", Role::Mariadb),
    ("mysql", Role::Mariadb),
    ("s3", Role::Minio),
    ("master", Role::K8sMaster),
    ("server", Role::K8sMaster),
    ("control-plane", Role::K8sMaster),
    ("worker", Role::K8sWorker),
    ("agent", Role::K8sWorker),
    ("node", Role::K8sWorker),
    ("prometheus", Role::Monitoring),
    ("grafana", Role::Monitoring),
];

impl Inventory {
    /// Reads and parses an inventory file. A missing or unreadable file is E001; everything
    /// else is reported by [`Inventory::parse`].
    pub fn load(path: &Path) -> Result<Inventory, Vec<Diagnostic>> {
        let shown = path.display().to_string();
        let bytes = read_capped(path, &shown, MAX_INPUT_BYTES)?;
        Inventory::parse(&shown, &bytes)
    }

    /// Parses servers.tsv bytes. `path_for_messages` is the file name shown in diagnostics.
    ///
    /// Every problem of the file is reported at once (E002 malformed line, E003 no hosts,
    /// E004 duplicate hostname or IP, E005 invalid value, E006 unknown role), in line order.
    /// Quorum counts are a whole-fleet property checked by [`Inventory::check_quorum`].
    /// Never panics, whatever the bytes.
    ///
    /// ```
    /// use kbz_core::errors::Code;
    /// use kbz_core::{Inventory, Role};
    ///
    /// let inv = Inventory::parse("servers.tsv", b"db1\t10.0.0.21\tetcd,postgres\n").expect("valid");
    /// assert!(inv.hosts[0].has(Role::Postgres));
    /// assert_eq!(inv.hosts[0].ssh_user, "root");
    ///
    /// // Every problem at once, each with its code and line.
    /// let bad = Inventory::parse("servers.tsv", b"db1 10.0.0.21 etcd\n").expect_err("spaces");
    /// assert_eq!(bad[0].code, Code::E002);
    /// ```
    pub fn parse(path_for_messages: &str, bytes: &[u8]) -> Result<Inventory, Vec<Diagnostic>> {
        let mut p = Parser {
            path: path_for_messages,
            diags: Vec::new(),
            hosts: Vec::new(),
            names: HashMap::new(),
            ips: HashMap::new(),
        };
        let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        let mut host_lines = 0usize;
        let mut seen_content = false;
        for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = idx + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let (text, valid) = match std::str::from_utf8(raw) {
                Ok(t) => (std::borrow::Cow::Borrowed(t), true),
                Err(e) => {
                    let at = e.valid_up_to();
                    let byte = raw.get(at).copied().unwrap_or_default();
                    p.diags.push(
                        Diagnostic::new(
                            Code::E002,
                            format!(
                                "line is not valid UTF-8: byte 0x{byte:02X} at column {}",
                                at + 1
                            ),
                        )
                        .at(p.path, Some(line))
                        .hint(format!(
                            "save the file as UTF-8, e.g. `iconv -f LATIN1 -t UTF-8 {0} -o {0}.utf8` \
                             and move the result over the original",
                            p.path
                        )),
                    );
                    (String::from_utf8_lossy(raw), false)
                }
            };
            let content = strip_comment(&text).trim_end();
            if content.trim().is_empty() {
                continue;
            }
            if !seen_content {
                seen_content = true;
                let first = content.split_whitespace().next().unwrap_or("");
                if first.eq_ignore_ascii_case("hostname") {
                    continue;
                }
            }
            host_lines += 1;
            if valid {
                p.host_line(line, content);
            }
        }
        if host_lines == 0 {
            let what = if bytes.iter().all(u8::is_ascii_whitespace) {
                "the inventory is empty"
            } else {
                "the inventory has no host lines (only comments, blank lines or a header)"
            };
            p.diags
                .push(Diagnostic::new(Code::E003, what).at(p.path, None).hint(
                    "add one line per server, `hostname<TAB>ip<TAB>roles`, or start from \
                         `cp examples/servers.tsv servers.tsv`",
                ));
        }
        if p.diags.is_empty() {
            Ok(Inventory {
                path: path_for_messages.to_string(),
                hosts: p.hosts,
            })
        } else {
            Err(kbz_errors::summarize(p.diags, kbz_errors::MAX_PER_CODE))
        }
    }

    /// E007 for every quorum role ([`Role::needs_quorum`]) held by 1, 2 or an even number of
    /// hosts. A role on no host is fine: that component is simply not installed. Each
    /// diagnostic points at the line of the last host with the role.
    pub fn check_quorum(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for &role in Role::ALL.iter().filter(|r| r.needs_quorum()) {
            let hosts = self.with_role(role);
            let n = hosts.len();
            if n == 0 || (n >= 3 && n % 2 == 1) {
                continue;
            }
            let names: Vec<&str> = hosts.iter().map(|h| h.hostname.as_str()).collect();
            let last = hosts.last().map(|h| h.line).filter(|&l| l > 0);
            let hint = if n < 3 {
                format!(
                    "add `{role}` to {} more host{} so the cluster has 3 members",
                    3 - n,
                    if 3 - n == 1 { "" } else { "s" }
                )
            } else {
                format!(
                    "add `{role}` to one more host ({} members) or remove it from one ({})",
                    n + 1,
                    n - 1
                )
            };
            out.push(
                Diagnostic::new(
                    Code::E007,
                    format!(
                        "role `{role}` is on {n} host{} ({}); a quorum role needs an odd count \
                         of at least 3",
                        if n == 1 { "" } else { "s" },
                        names.join(", ")
                    ),
                )
                .at(&self.path, last)
                .hint(hint),
            );
        }
        out
    }
}

/// The largest inventory or kbz.toml kbz reads (1 MiB, thousands of hosts): a larger file
/// is refused before it is parsed, so a wrong path (a log, a device) cannot exhaust memory.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Reads at most `max` bytes of a user's file; a longer one is E001 naming the cap, a file
/// that cannot be read is E001 too.
pub(crate) fn read_capped(
    path: &Path,
    shown: &str,
    max: usize,
) -> Result<Vec<u8>, Vec<Diagnostic>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| vec![read_error(shown, &e)])?;
    if bytes.len() > max {
        return Err(vec![Diagnostic::new(
            Code::E001,
            format!(
                "{shown} is larger than {max} bytes, more than any inventory or kbz.toml kbz reads"
            ),
        )
        .at(shown, None)
        .hint(
            "check the path: this does not look like a servers.tsv or kbz.toml",
        )]);
    }
    Ok(bytes)
}

/// E001 for a file that cannot be read.
pub(crate) fn read_error(shown: &str, e: &std::io::Error) -> Diagnostic {
    let d = if e.kind() == std::io::ErrorKind::NotFound {
        Diagnostic::new(Code::E001, format!("file not found: {shown}"))
    } else {
        Diagnostic::new(Code::E001, format!("cannot read {shown}: {e}"))
    };
    d.at(shown, None)
}

/// Cuts a `#` comment: one that starts the line or follows a space or tab. A `#` inside a
/// word (`note=a#b`) is kept, and then refused by the column's allow-list.
fn strip_comment(text: &str) -> &str {
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') {
            return &text[..i];
        }
    }
    text
}

/// The nearest valid role for a misspelt one.
pub fn suggest_role(unknown: &str) -> Option<Role> {
    let norm = unknown.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    if let Some(r) = Role::parse(&norm) {
        return Some(r);
    }
    if let Some(&(_, r)) = ROLE_ALIASES.iter().find(|(a, _)| *a == norm) {
        return Some(r);
    }
    Role::ALL
        .iter()
        .map(|&r| (strsim::damerau_levenshtein(&norm, r.as_str()), r))
        .min_by_key(|&(d, _)| d)
        .filter(|&(d, r)| d <= (r.as_str().len() / 3).max(2))
        .map(|(_, r)| r)
}

fn valid_roles() -> String {
    Role::ALL
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a hostname: RFC 1123 labels of lowercase letters, digits and hyphens, 1-63
/// characters, not starting or ending with a hyphen; dots separate labels of an FQDN.
pub fn check_hostname(name: &str) -> Result<(), (String, String)> {
    let fix = "use lowercase letters, digits and hyphens (dots only between the labels of a FQDN)";
    if name.len() > 253 {
        return Err((
            format!("hostname is {} characters long; at most 253", name.len()),
            "use a shorter name".into(),
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) && name.is_ascii() {
        return Err((
            format!("hostname `{name}` has uppercase letters"),
            format!("write it in lowercase: `{}`", name.to_ascii_lowercase()),
        ));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err((
            format!("hostname `{name}` is an IP address"),
            "the first column is the host's name and the second its address: \
             hostname<TAB>ip<TAB>roles"
                .into(),
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err((
                format!("hostname `{name}` has an empty label (a leading, trailing or double dot)"),
                fix.into(),
            ));
        }
        if label.len() > 63 {
            return Err((
                format!(
                    "hostname label `{label}` is {} characters long; at most 63",
                    label.len()
                ),
                "use a shorter name".into(),
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err((
                format!(
                    "hostname `{name}` contains `{}`, which is not allowed",
                    c.escape_default()
                ),
                fix.into(),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err((
                format!("hostname `{name}` has a label starting or ending with a hyphen"),
                fix.into(),
            ));
        }
    }
    Ok(())
}

/// Parses the ip column: IPv4 or IPv6 (no brackets, no prefix), a usable host address.
pub fn parse_host_ip(s: &str) -> Result<IpAddr, (String, String)> {
    match s.parse::<IpAddr>() {
        Ok(ip) => {
            let unusable = ip.is_unspecified()
                || ip.is_multicast()
                || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
            if unusable {
                Err((
                    format!("`{ip}` is not a host address"),
                    "write the server's own private address".into(),
                ))
            } else {
                Ok(ip)
            }
        }
        Err(_) => {
            let bare = s.trim_start_matches('[').trim_end_matches(']');
            let hint = if let Some((addr, _)) = s.split_once('/') {
                format!("write the address without a prefix length: `{addr}`")
            } else if bare != s && bare.parse::<IpAddr>().is_ok() {
                format!("write IPv6 addresses without brackets: `{bare}`")
            } else if s
                .rsplit_once(':')
                .is_some_and(|(a, p)| a.parse::<IpAddr>().is_ok() && p.parse::<u16>().is_ok())
            {
                "write the address alone; the port goes in the ssh_port column".into()
            } else if s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains(':') {
                "the ip column takes an address (e.g. 192.0.2.10), not a name".into()
            } else {
                "write an IPv4 address like 192.0.2.10 or an IPv6 address like 2001:db8::10".into()
            };
            Err((format!("`{s}` is not a valid IP address"), hint))
        }
    }
}

/// Parses the ssh_port column: a decimal integer 1-65535.
pub fn parse_port(s: &str) -> Result<u16, (String, String)> {
    let hint = || "write a port number from 1 to 65535 (22 is the default)".to_string();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err((format!("ssh_port `{s}` is not a number"), hint()));
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err((format!("ssh_port `{s}` is out of range 1-65535"), hint())),
    }
}

/// Checks the ssh_user column: 1-32 letters, digits, `_`, `-` or `.`, not starting with `-`.
pub fn check_ssh_user(s: &str) -> Result<(), (String, String)> {
    let ok = s.len() <= 32
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err((
            format!("ssh_user `{s}` is not a valid user name"),
            "use 1-32 letters, digits, `_`, `-` or `.` (leave the column empty for root)".into(),
        ))
    }
}

/// Parses the labels column: a comma list of `key=value`. Keys are letters, digits, `.`, `_`,
/// `-` and `/`; values may be empty and hold letters, digits, `.`, `_`, `-`, `:`, `/`, `@` and
/// `+` (not starting with `-`); `iface` holds an interface name.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let mut errs = Vec::new();
    let fix = "write labels as a comma list of key=value pairs, e.g. `zone=a,rack=r1`";
    for item in s.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            let what = if item.is_empty() {
                "labels have an empty entry (two commas in a row, or a trailing comma)".to_string()
            } else {
                format!("label `{item}` is not key=value")
            };
            errs.push((what, fix.to_string()));
            continue;
        };
        let key_ok = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
        if !key_ok {
            errs.push((
                format!("label `{item}` has an invalid key `{k}`"),
                fix.to_string(),
            ));
        } else if v.contains('=') {
            errs.push((
                format!("label `{item}` has more than one `=`"),
                fix.to_string(),
            ));
        } else if let Err(e) = label_allowed(k, v) {
            errs.push((e, label_fix(k)));
        } else if out.insert(k.to_string(), v.to_string()).is_some() {
            errs.push((
                format!("label key `{k}` appears twice"),
                "give each key one value".into(),
            ));
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// The allow-list of a label's value: `iface` is an interface name, every other label a
/// plain token ([`crate::allow::label_value`]).
fn label_allowed(key: &str, value: &str) -> Result<(), String> {
    match key {
        "iface" => crate::allow::interface(value),
        _ => crate::allow::label_value(key, value),
    }
}

fn label_fix(key: &str) -> String {
    match key {
        "iface" => "write the interface that carries the host's address, as `ip -brief address` \
                    shows it, e.g. `iface=ens18`"
            .into(),
        _ => format!(
            "write `{key}=` with letters, digits and `.`, `_`, `-`, `:`, `/`, `@`, `+` only, e.g. \
             `zone=eu-1a`"
        ),
    }
}

/// Parsing state for one file.
struct Parser<'a> {
    path: &'a str,
    diags: Vec<Diagnostic>,
    hosts: Vec<Host>,
    names: HashMap<String, usize>,
    ips: HashMap<IpAddr, usize>,
}

impl Parser<'_> {
    fn push(&mut self, code: Code, line: usize, host: Option<&str>, msg: String, hint: String) {
        let mut d = Diagnostic::new(code, msg)
            .at(self.path, Some(line))
            .hint(hint);
        if let Some(h) = host {
            d = d.on_host(h);
        }
        self.diags.push(d);
    }

    /// One host line (comment already cut, not blank).
    fn host_line(&mut self, line: usize, content: &str) {
        let raw: Vec<&str> = content.split('\t').collect();
        let n = raw.len();
        if n < REQUIRED_COLUMNS {
            if content.contains(' ') {
                self.push(
                    Code::E002,
                    line,
                    None,
                    "fields are separated by spaces; use tabs".into(),
                    format!(
                        "put exactly one tab between columns (hostname<TAB>ip<TAB>roles), e.g. \
                         `sed -i -E '{line}s/ +/\\t/g' {}`",
                        self.path
                    ),
                );
            } else {
                self.push(
                    Code::E002,
                    line,
                    None,
                    format!(
                        "expected at least {REQUIRED_COLUMNS} tab-separated columns (hostname, ip, \
                         roles), found {n}"
                    ),
                    "add the missing columns: hostname<TAB>ip<TAB>roles".into(),
                );
            }
            return;
        }
        if n > COLUMNS.len() {
            let hint = if content.contains("\t\t") {
                "two tabs in a row make an empty column; put exactly one tab between columns"
            } else {
                "remove the extra columns (comments go after `#`)"
            };
            self.push(
                Code::E002,
                line,
                None,
                format!(
                    "found {n} columns; a line has at most {} ({})",
                    COLUMNS.len(),
                    COLUMNS.join(", ")
                ),
                hint.into(),
            );
            return;
        }
        let fields: Vec<&str> = raw.iter().map(|f| f.trim_matches(' ')).collect();
        if let Some(i) = fields[..REQUIRED_COLUMNS].iter().position(|f| f.is_empty()) {
            let hint = if content.contains("\t\t") {
                "two tabs in a row make an empty column; put exactly one tab between columns"
            } else {
                "fill in the column: hostname<TAB>ip<TAB>roles"
            };
            self.push(
                Code::E002,
                line,
                None,
                format!("the `{}` column is empty", COLUMNS[i]),
                hint.into(),
            );
            return;
        }
        let hostname_ok =
            !fields[0].chars().any(char::is_whitespace) && check_hostname(fields[0]).is_ok();
        let tag = hostname_ok.then(|| fields[0].to_string());
        let tag = tag.as_deref();

        // Spaces inside a column: the column is skipped, the others are still checked.
        let mut spaced = [false; 6];
        for (i, f) in fields.iter().enumerate() {
            if f.chars().any(char::is_whitespace) {
                spaced[i] = true;
                let hint = if i == 2 || i == 5 {
                    "write the list without spaces, e.g. `etcd,postgres,redis`"
                } else {
                    "fields are separated by single tabs; a column holds no spaces"
                };
                self.push(
                    Code::E002,
                    line,
                    tag,
                    format!("the `{}` column `{f}` contains spaces", COLUMNS[i]),
                    hint.into(),
                );
            }
        }

        let hostname = if spaced[0] {
            None
        } else {
            match check_hostname(fields[0]) {
                Ok(()) => Some(fields[0].to_string()),
                Err((msg, hint)) => {
                    self.push(Code::E005, line, None, msg, hint);
                    None
                }
            }
        };
        let ip = if spaced[1] {
            None
        } else {
            match parse_host_ip(fields[1]) {
                Ok(ip) => Some(ip),
                Err((msg, hint)) => {
                    self.push(Code::E005, line, tag, msg, hint);
                    None
                }
            }
        };
        let roles = if spaced[2] {
            None
        } else {
            self.roles(line, tag, fields[2])
        };
        let ssh_user = match fields.get(3).copied() {
            None | Some("") => Some("root".to_string()),
            Some(_) if spaced[3] => None,
            Some(u) => match check_ssh_user(u) {
                Ok(()) => Some(u.to_string()),
                Err((msg, hint)) => {
                    self.push(Code::E005, line, tag, msg, hint);
                    None
                }
            },
        };
        let ssh_port = match fields.get(4).copied() {
            None | Some("") => Some(22),
            Some(_) if spaced[4] => None,
            Some(p) => match parse_port(p) {
                Ok(p) => Some(p),
                Err((msg, hint)) => {
                    self.push(Code::E005, line, tag, msg, hint);
                    None
                }
            },
        };
        let labels = match fields.get(5).copied() {
            None | Some("") => Some(BTreeMap::new()),
            Some(_) if spaced[5] => None,
            Some(l) => match parse_labels(l) {
                Ok(l) => Some(l),
                Err(errs) => {
                    for (msg, hint) in errs {
                        self.push(Code::E005, line, tag, msg, hint);
                    }
                    None
                }
            },
        };

        let mut duplicate = false;
        if let Some(name) = &hostname {
            if let Some(&first) = self.names.get(name) {
                duplicate = true;
                self.push(
                    Code::E004,
                    line,
                    tag,
                    format!("hostname `{name}` is already used on line {first}"),
                    "list each host once; give one line several roles as a comma list, or \
                     rename this host"
                        .into(),
                );
            } else {
                self.names.insert(name.clone(), line);
            }
        }
        if let Some(ip) = ip {
            if let Some(&first) = self.ips.get(&ip) {
                duplicate = true;
                self.push(
                    Code::E004,
                    line,
                    tag,
                    format!("IP address {ip} is already used on line {first}"),
                    "every host needs its own address; fix the ip column of one of the two lines"
                        .into(),
                );
            } else {
                self.ips.insert(ip, line);
            }
        }
        if duplicate {
            return;
        }
        if let (
            Some(hostname),
            Some(ip),
            Some(roles),
            Some(ssh_user),
            Some(ssh_port),
            Some(labels),
        ) = (hostname, ip, roles, ssh_user, ssh_port, labels)
        {
            self.hosts.push(Host {
                hostname,
                ip,
                roles,
                ssh_user,
                ssh_port,
                labels,
                line,
            });
        }
    }

    /// The roles column: a comma list of known roles.
    fn roles(&mut self, line: usize, tag: Option<&str>, field: &str) -> Option<BTreeSet<Role>> {
        let mut roles = BTreeSet::new();
        let mut ok = true;
        for item in field.split(',') {
            if item.is_empty() {
                ok = false;
                self.push(
                    Code::E005,
                    line,
                    tag,
                    format!("roles `{field}` have an empty entry (two commas in a row, or a trailing comma)"),
                    "write roles as a comma list, e.g. `etcd,postgres,redis`".into(),
                );
                continue;
            }
            match Role::parse(item) {
                Some(r) => {
                    roles.insert(r);
                }
                None => {
                    ok = false;
                    let hint = match suggest_role(item) {
                        Some(r) => format!("did you mean `{r}`? Valid roles: {}", valid_roles()),
                        None => format!("valid roles: {}", valid_roles()),
                    };
                    self.push(
                        Code::E006,
                        line,
                        tag,
                        format!("unknown role `{item}`"),
                        hint,
                    );
                }
            }
        }
        ok.then_some(roles)
    }
}
