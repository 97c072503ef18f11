//! `kbz.toml`: cluster settings with documented defaults (see docs/inventory.md).
//! Unknown keys are errors (a typo must not silently fall back to a default).

use ipnet::IpNet;
use kbz_errors::{Code, Diagnostic};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use crate::notifier::Level;
pub use crate::toml_lines::key_line;
use crate::toml_lines::{header_name, line_key, table_at};

pub mod backup;
mod failover;
pub mod mariadb;
pub mod preflight;
pub mod rabbitmq;
mod values;
pub use backup::BackupConfig;
pub use failover::FailoverConfig;
pub use mariadb::MariadbConfig;
pub use preflight::PreflightConfig;
pub use rabbitmq::RabbitmqConfig;

/// The whole kbz.toml.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Cluster-wide settings.
    pub cluster: ClusterConfig,
    /// SSH settings.
    pub ssh: SshConfig,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// One virtual IP per service front: `postgres`, `redis`, `rabbitmq`, `mariadb`, `k8s_api`.
    pub vips: BTreeMap<String, IpAddr>,
    /// Pinned versions (`postgres = "15"`, `k3s = "v1.30.4+k3s1"`).
    pub versions: BTreeMap<String, String>,
    /// PostgreSQL settings.
    pub postgres: PostgresConfig,
    /// Kubernetes settings.
    pub kubernetes: KubernetesConfig,
    /// Notification targets.
    pub notify: Vec<NotifyTarget>,
    /// `[artifacts.NAME]`: overrides of the pinned artifacts components declare in code
    /// (see [`crate::artifact`]).
    pub artifacts: BTreeMap<String, crate::artifact::ArtifactOverride>,
    /// `[failover]`: kbz-failover's budgets and power commands.
    pub failover: FailoverConfig,
    /// `[security]`: TLS between the members.
    pub security: SecurityConfig,
    /// `[preflight]`: what each role needs of its host, and the clock and network thresholds.
    pub preflight: PreflightConfig,
    /// `[backup]`: kbz-backup's repository, retention, encryption and schedules.
    pub backup: BackupConfig,
    /// `[rabbitmq]`: the application user and vhost.
    pub rabbitmq: RabbitmqConfig,
    /// `[mariadb]`: the application user and database.
    pub mariadb: MariadbConfig,
}

/// `[security]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// TLS with kbz's own CA (`STATE_DIR/tls`): etcd peer and client TLS with client
    /// certificates, Patroni's etcd3 client, PostgreSQL `ssl = on` with `hostssl` for network
    /// access. The lab's end-to-end run uses it; off by default because a running plaintext
    /// cluster is not migrated by a re-run (the preflight refuses one, E077).
    pub tls: bool,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Cluster name, used in notifications and generated names.
    pub name: String,
    /// The private subnet every node, VIP and MetalLB address lives in. Required for validation.
    pub subnet: Option<IpNet>,
    /// Hosts run in parallel per step.
    pub forks: usize,
    /// `http://host:3142` apt proxy written to /etc/apt/apt.conf.d/01kbz-proxy.
    pub apt_proxy: Option<String>,
    /// NTP servers for systemd-timesyncd; empty keeps the distribution's default.
    pub ntp_servers: Vec<String>,
    /// Extra packages installed by module 1.
    pub extra_packages: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "kbz".into(),
            subnet: None,
            forks: 10,
            apt_proxy: None,
            ntp_servers: Vec::new(),
            extra_packages: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// The cluster name as a [`slug`], for tokens, key paths and scopes.
    pub fn slug(&self) -> String {
        slug(&self.name)
    }
}

/// A name safe in tokens and key paths: lowercase ASCII letters, digits and `-` (every other
/// character becomes `-`, and none leads or trails); `kbz` when nothing is left.
pub fn slug(name: &str) -> String {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "kbz".into()
    } else {
        s.to_string()
    }
}

/// `[ssh]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// Private key file; ssh-agent is tried when unset.
    pub key: Option<String>,
    /// known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<String>,
    /// Optional bastion, `user@host:port`.
    pub jump_host: Option<String>,
}

/// `[timeouts]`, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect + SSH handshake.
    pub connect: u64,
    /// One remote command.
    pub command: u64,
    /// One readiness wait (a cluster forming, a service answering).
    pub readiness: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 10,
            command: 900,
            readiness: 300,
        }
    }
}

/// `[postgres]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Patroni synchronous_mode: no acknowledged commit is lost on failover.
    pub synchronous_mode: bool,
    /// kbz-health: a replica further behind than this many bytes of WAL is degraded.
    pub max_lag_bytes: u64,
    /// kbz-health: a replica whose replay lags more seconds than this is degraded.
    pub max_lag_seconds: f64,
    /// The application role clients log in as (through the VIP or a member's address); its
    /// password is the generated `postgres_app_password` secret. The superuser `postgres`
    /// is reachable only over the local socket.
    pub app_user: String,
    /// The application database, owned by [`PostgresConfig::app_user`]; the only database
    /// that role may reach over the network.
    pub app_database: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            synchronous_mode: true,
            max_lag_bytes: 16 * 1024 * 1024,
            max_lag_seconds: 30.0,
            app_user: "app".into(),
            app_database: "app".into(),
        }
    }
}

/// `[kubernetes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// `k3s` or `kubeadm`.
    pub flavor: String,
    /// MetalLB address pool, `first-last`.
    pub metallb_range: Option<String>,
    /// Pod network.
    pub pod_cidr: String,
    /// Service network.
    pub service_cidr: String,
    /// Add-ons installed on the cluster, from [`ADDONS`] (default: all of them).
    pub addons: Vec<String>,
    /// A registry mirror (`https://registry.example.internal:5000`) written to K3s'
    /// registries.yaml for docker.io and the other upstream registries; unset: none.
    pub registry_mirror: Option<String>,
    /// Host name Rancher answers on (its ingress); default `rancher.<cluster slug>.internal`.
    pub rancher_hostname: Option<String>,
}

/// The add-ons of `[kubernetes] addons`, in install order.
pub const ADDONS: &[&str] = &[
    "calico",
    "metallb",
    "ingress-nginx",
    "monitoring",
    "rancher",
];

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            flavor: "k3s".into(),
            metallb_range: None,
            pod_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            addons: ADDONS.iter().map(|a| a.to_string()).collect(),
            registry_mirror: None,
            rancher_hostname: None,
        }
    }
}

/// One `[[notify]]` target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// Name shown in `notify test` output.
    pub name: String,
    /// Apprise-style URL (`slack://`, `discord://`, `tgram://`, `mailto://`, `mailtos://`,
    /// `json://`, or `https://` for a generic JSON webhook). `{secret:NAME}` placeholders are
    /// replaced from the secrets file, so tokens never live in kbz.toml.
    pub url: String,
    /// Minimum level sent.
    #[serde(default = "default_level")]
    pub min_level: Level,
    /// Disabled targets are skipped (and said so).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Per-attempt timeout in seconds.
    #[serde(default = "default_notify_timeout")]
    pub timeout_secs: u64,
    /// Channel-specific options (`to`, `from`, `chat_id`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_level() -> Level {
    Level::Info
}

fn default_true() -> bool {
    true
}

fn default_notify_timeout() -> u64 {
    10
}

/// The service fronts a `[vips]` entry may name.
pub const VIP_NAMES: &[&str] = &["postgres", "redis", "rabbitmq", "mariadb", "k8s_api"];

/// The values of `[kubernetes] flavor`.
pub const FLAVORS: &[&str] = &["k3s", "kubeadm"];

/// The keys of each table, for "did you mean" hints on unknown keys.
const TABLE_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "cluster",
            "ssh",
            "timeouts",
            "vips",
            "versions",
            "postgres",
            "kubernetes",
            "notify",
            "artifacts",
            "failover",
            "security",
            "preflight",
            "backup",
            "rabbitmq",
            "mariadb",
        ],
    ),
    ("security", &["tls"]),
    ("rabbitmq", rabbitmq::KEYS),
    ("mariadb", mariadb::KEYS),
    ("backup", backup::KEYS),
    ("preflight", preflight::KEYS),
    (
        "cluster",
        &[
            "name",
            "subnet",
            "forks",
            "apt_proxy",
            "ntp_servers",
            "extra_packages",
        ],
    ),
    ("ssh", &["key", "known_hosts", "jump_host"]),
    ("timeouts", &["connect", "command", "readiness"]),
    (
        "postgres",
        &[
            "synchronous_mode",
            "max_lag_bytes",
            "max_lag_seconds",
            "app_user",
            "app_database",
        ],
    ),
    (
        "failover",
        &[
            "power_off",
            "power_on",
            "postgres_lost",
            "postgres_crash_gap_secs",
            "postgres_switchover_gap_secs",
            "etcd_member_gap_secs",
            "redis_gap_secs",
            "redis_lost_window_secs",
            "vip_gap_secs",
            "k8s_api_gap_secs",
            "rabbitmq_gap_secs",
        ],
    ),
    (
        "kubernetes",
        &[
            "flavor",
            "metallb_range",
            "pod_cidr",
            "service_cidr",
            "addons",
            "registry_mirror",
            "rancher_hostname",
        ],
    ),
    (
        "notify",
        &[
            "name",
            "url",
            "min_level",
            "enabled",
            "timeout_secs",
            "options",
        ],
    ),
];

/// An inclusive range of addresses of one family, such as the MetalLB pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AddrRange {
    /// First address.
    pub first: IpAddr,
    /// Last address (not below `first`).
    pub last: IpAddr,
}

impl AddrRange {
    /// Parses `first-last` (spaces around `-` allowed) or a CIDR block (`192.0.2.240/28`).
    pub fn parse(s: &str) -> Result<AddrRange, String> {
        let s = s.trim();
        let shape = || {
            format!(
                "`{s}` is not an address range: write `first-last` (e.g. \
                 `192.0.2.200-192.0.2.220`) or a CIDR block (e.g. `192.0.2.224/28`)"
            )
        };
        if s.contains('/') {
            let net: IpNet = s.parse().map_err(|_| shape())?;
            return Ok(AddrRange {
                first: net.network(),
                last: net.broadcast(),
            });
        }
        let (a, b) = s.split_once('-').ok_or_else(shape)?;
        let first: IpAddr = a.trim().parse().map_err(|_| shape())?;
        let last: IpAddr = b.trim().parse().map_err(|_| shape())?;
        if first.is_ipv4() != last.is_ipv4() {
            return Err(format!(
                "`{s}` mixes IPv4 and IPv6; both ends must be of one family"
            ));
        }
        if first > last {
            return Err(format!(
                "`{s}` ends before it starts; write the lower address first: `{last}-{first}`"
            ));
        }
        Ok(AddrRange { first, last })
    }

    /// True when `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4() && self.first <= ip && ip <= self.last
    }

    /// True when both ends lie in `net` (so every address does).
    pub fn inside(&self, net: &IpNet) -> bool {
        net.contains(&self.first) && net.contains(&self.last)
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl KubernetesConfig {
    /// The parsed MetalLB pool, when one is configured.
    pub fn metallb_pool(&self) -> Option<Result<AddrRange, String>> {
        self.metallb_range.as_deref().map(AddrRange::parse)
    }
}

impl Config {
    /// The pin for an artifact: `default` (declared by a component) or its
    /// `[artifacts.NAME]` override.
    pub fn artifact(&self, default: &crate::artifact::ArtifactPin) -> crate::artifact::ArtifactPin {
        crate::artifact::resolve(default, &self.artifacts)
    }

    /// Reads and parses kbz.toml. A missing or unreadable file is E001; everything else E008.
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        let shown = path.display().to_string();
        if let Err(e) = std::fs::metadata(path) {
            let mut d = crate::inventory::read_error(&shown, &e);
            if e.kind() == std::io::ErrorKind::NotFound {
                d = d.hint(format!(
                    "create it from the example: `cp examples/kbz.toml {shown}`, or leave out \
                     --config to run with the defaults"
                ));
            }
            return Err(vec![d]);
        }
        let bytes = crate::inventory::read_capped(path, &shown, crate::inventory::MAX_INPUT_BYTES)?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Config::parse(&shown, text),
            Err(e) => {
                let at = e.valid_up_to();
                let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                Err(vec![Diagnostic::new(
                    Code::E008,
                    "the configuration is not valid UTF-8",
                )
                .at(&shown, Some(line))
                .hint(format!(
                    "save the file as UTF-8, e.g. `iconv -f LATIN1 -t UTF-8 {shown} -o {shown}.utf8`"
                ))])
            }
        }
    }

    /// Like [`Config::load`], but a file that does not exist yields the defaults. Use it only
    /// where running without a kbz.toml is allowed (the user did not name one).
    pub fn load_or_default(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            _ => Config::load(path),
        }
    }

    /// Parses kbz.toml text. `path_for_messages` is the file name shown in diagnostics.
    ///
    /// A TOML syntax error, an unknown key or a value of the wrong type is one E008 with the
    /// line (the TOML reader stops at the first); when the file reads, every semantic problem
    /// found by [`Config::check`] is reported at once. A UTF-8 BOM is accepted.
    ///
    /// ```
    /// use kbz_core::Config;
    ///
    /// let cfg = Config::parse("kbz.toml", "[cluster]\nname = \"prod\"\nforks = 4\n").expect("valid");
    /// assert_eq!((cfg.cluster.name.as_str(), cfg.cluster.forks), ("prod", 4));
    /// // A key kbz does not know is E008 with its line.
    /// let bad = Config::parse("kbz.toml", "[cluster]\nnmae = \"prod\"\n").expect_err("typo");
    /// assert_eq!(bad[0].code, kbz_core::errors::Code::E008);
    /// ```
    pub fn parse(path_for_messages: &str, text: &str) -> Result<Config, Vec<Diagnostic>> {
        let path = path_for_messages;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(vec![toml_error(path, text, &e, true)]);
        }
        let cfg: Config =
            toml::from_str(text).map_err(|e| vec![toml_error(path, text, &e, false)])?;
        let diags = cfg.check(path, Some(text));
        if diags.is_empty() {
            Ok(cfg)
        } else {
            Err(diags)
        }
    }

    /// Semantic checks of values (E008): name, forks, timeouts, flavor, CIDRs, MetalLB range
    /// syntax, VIP names, notification targets, and the allow-lists of every free-text value
    /// that reaches a host (apt proxy, NTP servers, packages, versions, URLs; `values`). `text` is the file's source,
    /// used only to find line numbers; without it diagnostics name the file alone.
    pub fn check(&self, path: &str, text: Option<&str>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let at = |table: &str, key: &str| text.and_then(|t| key_line(t, table, key));
        let mut bad = |table: &str, key: &str, msg: String, hint: String| {
            out.push(
                Diagnostic::new(Code::E008, msg)
                    .at(path, at(table, key))
                    .hint(hint),
            );
        };
        let c = &self.cluster;
        if c.name.trim().is_empty() {
            bad(
                "cluster",
                "name",
                "[cluster] name is empty".into(),
                "give the cluster a short name, e.g. `name = \"prod\"`".into(),
            );
        }
        if c.forks == 0 {
            bad(
                "cluster",
                "forks",
                "[cluster] forks is 0; at least one host must run at a time".into(),
                "set `forks = 10` (the default) or remove the line".into(),
            );
        }
        if let Some(net) = c.subnet {
            if net.trunc() != net {
                bad(
                    "cluster",
                    "subnet",
                    format!("[cluster] subnet `{net}` has host bits set"),
                    format!("write the network address: `subnet = \"{}\"`", net.trunc()),
                );
            }
        }
        for (key, v) in [
            ("connect", self.timeouts.connect),
            ("command", self.timeouts.command),
            ("readiness", self.timeouts.readiness),
        ] {
            if v == 0 {
                bad(
                    "timeouts",
                    key,
                    format!("[timeouts] {key} is 0"),
                    "give a number of seconds of at least 1, or remove the line for the default"
                        .into(),
                );
            }
        }
        let k = &self.kubernetes;
        if !FLAVORS.contains(&k.flavor.as_str()) {
            bad(
                "kubernetes",
                "flavor",
                format!("[kubernetes] flavor `{}` is unknown", k.flavor),
                format!(
                    "{}valid flavors: k3s, kubeadm",
                    did_you_mean(&k.flavor, FLAVORS)
                ),
            );
        }
        for (key, v) in [("pod_cidr", &k.pod_cidr), ("service_cidr", &k.service_cidr)] {
            if v.parse::<IpNet>().is_err() {
                bad(
                    "kubernetes",
                    key,
                    format!("[kubernetes] {key} `{v}` is not a CIDR block"),
                    "write it like `10.42.0.0/16`".into(),
                );
            }
        }
        if let Some(Err(msg)) = k.metallb_pool() {
            bad(
                "kubernetes",
                "metallb_range",
                format!("[kubernetes] metallb_range: {msg}"),
                "write `metallb_range = \"192.0.2.200-192.0.2.220\"` with free addresses inside \
                 [cluster] subnet"
                    .into(),
            );
        }
        for a in &k.addons {
            if !ADDONS.contains(&a.as_str()) {
                bad(
                    "kubernetes",
                    "addons",
                    format!("[kubernetes] addons: `{a}` is not an add-on kbz installs"),
                    format!("{}add-ons: {}", did_you_mean(a, ADDONS), ADDONS.join(", ")),
                );
            }
        }
        for name in self.vips.keys() {
            if !VIP_NAMES.contains(&name.as_str()) {
                bad(
                    "vips",
                    name,
                    format!("[vips] `{name}` is not a service front"),
                    format!(
                        "{}VIPs can be set for: {}",
                        did_you_mean(name, VIP_NAMES),
                        VIP_NAMES.join(", ")
                    ),
                );
            }
        }
        out.extend(values::check(self, path, text));
        out.extend(self.failover.check(path, text));
        out.extend(self.preflight.check(path, text));
        out.extend(self.backup.check(path, text));
        out.extend(crate::artifact::check_overrides(
            &self.artifacts,
            path,
            text,
        ));
        let mut names = BTreeSet::new();
        for (i, n) in self.notify.iter().enumerate() {
            let line = text.and_then(|t| array_table_line(t, "notify", i));
            let mut push = |msg: String, hint: &str| {
                out.push(Diagnostic::new(Code::E008, msg).at(path, line).hint(hint));
            };
            if n.name.trim().is_empty() {
                push(
                    format!("[[notify]] number {} has an empty name", i + 1),
                    "give each target a name, e.g. `name = \"ops-slack\"`",
                );
            } else if !names.insert(n.name.as_str()) {
                push(
                    format!("[[notify]] name `{}` is used twice", n.name),
                    "give each target its own name",
                );
            }
            if !n.url.contains("://") {
                push(
                    format!(
                        "[[notify]] `{}` has url `{}` without a scheme",
                        n.name, n.url
                    ),
                    "write a URL like `slack://...`, `mailto://...` or `https://...`",
                );
            }
        }
        // In file order, whichever check found them; problems without a line go last.
        out.sort_by_key(|d| {
            d.location
                .as_ref()
                .and_then(|l| l.line)
                .unwrap_or(usize::MAX)
        });
        out
    }
}

/// `did you mean `x`? ` (with a trailing space) for the nearest candidate, or empty.
pub(crate) fn did_you_mean(unknown: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(unknown, c), *c))
        .min_by_key(|&(d, _)| d)
        .filter(|&(d, c)| d <= (c.len() / 3).max(2))
        .map(|(_, c)| format!("did you mean `{c}`? "))
        .unwrap_or_default()
}

/// One E008 from a TOML syntax or deserialisation error, with the line from its span.
fn toml_error(path: &str, text: &str, e: &toml::de::Error, syntax: bool) -> Diagnostic {
    let line = e.span().map(|s| line_of(text, s.start));
    let msg = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let table = line.map(|l| table_at(text, l)).unwrap_or_default();
    let shown_table = if table.is_empty() {
        "the top level".to_string()
    } else {
        format!("[{table}]")
    };
    let key_on_line = line
        .and_then(|l| text.lines().nth(l.saturating_sub(1)))
        .and_then(line_key);
    let (message, hint) = if syntax {
        (
            format!("not valid TOML: {msg}"),
            "fix the syntax on this line: strings need double quotes (`name = \"prod\"`), \
             tables are written `[cluster]`, each key appears once; compare with \
             examples/kbz.toml"
                .to_string(),
        )
    } else if let Some(rest) = msg.strip_prefix("unknown field ") {
        let quoted: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let unknown = quoted.first().copied().unwrap_or("");
        let keys = TABLE_KEYS
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, k)| *k)
            .unwrap_or(&[]);
        let keys = if keys.is_empty() {
            quoted.get(1..).unwrap_or(&[])
        } else {
            keys
        };
        (
            format!("unknown key `{unknown}` in {shown_table}"),
            match did_you_mean(unknown, keys).as_str() {
                "" => format!(
                    "fix the spelling or remove the line; the keys of {shown_table} are: {} \
                     (see docs/inventory.md)",
                    keys.join(", ")
                ),
                dym => format!(
                    "{dym}otherwise remove the line; the keys of {shown_table} are: {} (see \
                     docs/inventory.md)",
                    keys.join(", ")
                ),
            },
        )
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        let key = key_on_line
            .map(|k| format!(" for `{k}` in {shown_table}"))
            .unwrap_or_default();
        (
            format!("wrong value{key}: {msg}"),
            "numbers and booleans are written without quotes, strings and addresses with \
             double quotes, lists in [ ]; docs/inventory.md gives each key's type"
                .to_string(),
        )
    } else {
        let place = match key_on_line {
            Some(k) => format!("`{k}` in {shown_table}"),
            None => shown_table,
        };
        (
            format!("{place}: {msg}"),
            "compare with examples/kbz.toml; docs/inventory.md lists every key".to_string(),
        )
    };
    Diagnostic::new(Code::E008, message)
        .at(path, line)
        .hint(hint)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of the `index`-th (0-based) `[[table]]` header.
fn array_table_line(text: &str, table: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            l.trim().starts_with("[[") && header_name(l.trim()).as_deref() == Some(table)
        })
        .nth(index)
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Prod EU"), "prod-eu");
        assert_eq!(slug("  example  "), "example");
        assert_eq!(slug("a_b.c"), "a-b-c");
        assert_eq!(slug("--"), "kbz");
        assert_eq!(slug(""), "kbz");
        assert_eq!(slug("Zürich-1"), "z-rich-1");
        assert_eq!(ClusterConfig::default().slug(), "kbz");
    }
}
