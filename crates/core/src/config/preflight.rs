//! `[preflight]` of kbz.toml: the minimums a host must meet for its roles before kbz changes
//! anything (CPU count, memory, free disk on `/` and each role's data directory, kernel
//! version) and the thresholds of the clock and network checks. Every default is documented
//! in docs/inventory.md and overridable per role: `[preflight.roles.postgres] memory_mb = 4096`.

use super::key_line;
use crate::inventory::{Host, Role};
use kbz_errors::{Code, Diagnostic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[preflight]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreflightConfig {
    /// Free space on `/` every host needs, in MiB.
    pub root_disk_mb: u64,
    /// Oldest kernel accepted (`major.minor`).
    pub min_kernel: String,
    /// Largest clock offset between a host and the fleet's median (etcd and Patroni need
    /// agreeing clocks), in milliseconds; above it is an error.
    pub max_clock_offset_ms: u64,
    /// Round-trip time between members of one quorum service above which preflight warns,
    /// in milliseconds.
    pub max_rtt_ms: f64,
    /// Per-role overrides of [`RoleMinimum::default_for`], keyed by the role's inventory
    /// spelling (`postgres`, `k8s-master`).
    pub roles: BTreeMap<String, RoleOverride>,
}

impl Default for PreflightConfig {
    fn default() -> Self {
        PreflightConfig {
            root_disk_mb: 4096,
            min_kernel: "4.19".into(),
            max_clock_offset_ms: 500,
            max_rtt_ms: 10.0,
            roles: BTreeMap::new(),
        }
    }
}

/// `[preflight.roles.NAME]`: any of the keys, the others keep the role's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleOverride {
    /// CPUs (online processors).
    pub cpus: Option<u32>,
    /// Memory (MemTotal), in MiB.
    pub memory_mb: Option<u64>,
    /// Free space on the role's data directory, in MiB.
    pub disk_mb: Option<u64>,
}

/// The keys of `[preflight]` and of `[preflight.roles.NAME]`, for "did you mean" hints.
pub const KEYS: &[&str] = &[
    "root_disk_mb",
    "min_kernel",
    "max_clock_offset_ms",
    "max_rtt_ms",
    "roles",
];

/// What one role needs of its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleMinimum {
    /// CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// The role's data directory and the free MiB it needs there, if it keeps data.
    pub data: Option<(&'static str, u64)>,
}

impl RoleMinimum {
    /// kbz's documented default for a role (docs/inventory.md, `[preflight]`).
    pub fn default_for(role: Role) -> RoleMinimum {
        let (cpus, memory_mb, data) = match role {
            Role::Lb => (1, 512, None),
            Role::Etcd => (1, 1024, Some(("/var/lib/etcd", 2048))),
            Role::Postgres => (2, 2048, Some(("/var/lib/postgresql", 10240))),
            Role::Redis => (1, 1024, Some(("/var/lib/redis", 2048))),
            Role::Rabbitmq => (1, 2048, Some(("/var/lib/rabbitmq", 4096))),
            Role::Mariadb => (2, 2048, Some(("/var/lib/mysql", 10240))),
            Role::Proxysql => (1, 512, None),
            Role::Minio => (1, 2048, Some(("/var/lib/kbz-objectstore", 10240))),
            Role::K8sMaster => (2, 2048, Some(("/var/lib/rancher", 10240))),
            Role::K8sWorker => (2, 2048, Some(("/var/lib/rancher", 10240))),
            Role::Monitoring => (1, 2048, None),
            Role::Backup => (1, 1024, None),
        };
        RoleMinimum {
            cpus,
            memory_mb,
            data,
        }
    }
}

/// What a host needs: the largest CPU and memory minimum of its roles, and free space on `/`
/// and on each role's data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostNeeds {
    /// CPUs.
    pub cpus: u32,
    /// The role that asks for that many CPUs (`base` when none asks more than one).
    pub cpus_for: String,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// The role that asks for that much memory.
    pub memory_for: String,
    /// Directory, free MiB needed, and the role (or `base` for `/`), largest need per path.
    pub disk: Vec<(String, u64, String)>,
}

impl PreflightConfig {
    /// A role's minimum with this config's overrides.
    pub fn minimum(&self, role: Role) -> RoleMinimum {
        let mut m = RoleMinimum::default_for(role);
        if let Some(o) = self.roles.get(role.as_str()) {
            m.cpus = o.cpus.unwrap_or(m.cpus);
            m.memory_mb = o.memory_mb.unwrap_or(m.memory_mb);
            if let (Some(d), Some((dir, _))) = (o.disk_mb, m.data) {
                m.data = Some((dir, d));
            }
        }
        m
    }

    /// What `host` needs for its roles (the largest of each; at least 1 CPU and 512 MiB).
    pub fn needs(&self, host: &Host) -> HostNeeds {
        let mut n = HostNeeds {
            cpus: 1,
            cpus_for: "base".into(),
            memory_mb: 512,
            memory_for: "base".into(),
            disk: vec![("/".into(), self.root_disk_mb, "base".into())],
        };
        for role in &host.roles {
            let m = self.minimum(*role);
            if m.cpus > n.cpus {
                n.cpus = m.cpus;
                n.cpus_for = role.as_str().into();
            }
            if m.memory_mb > n.memory_mb {
                n.memory_mb = m.memory_mb;
                n.memory_for = role.as_str().into();
            }
            if let Some((dir, mb)) = m.data {
                match n.disk.iter_mut().find(|(d, _, _)| d == dir) {
                    Some(e) if e.1 < mb => {
                        e.1 = mb;
                        e.2 = role.as_str().into();
                    }
                    Some(_) => {}
                    None => n.disk.push((dir.into(), mb, role.as_str().into())),
                }
            }
        }
        n
    }

    /// The kernel minimum as `(major, minor)`, if it parses.
    pub fn kernel(&self) -> Option<(u32, u32)> {
        parse_kernel(&self.min_kernel)
    }

    /// Semantic checks (E008 with the line): known role names, a parsable kernel version,
    /// thresholds above zero.
    pub fn check(&self, path: &str, text: Option<&str>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let at = |table: &str, key: &str| text.and_then(|t| key_line(t, table, key));
        if self.kernel().is_none() {
            out.push(
                Diagnostic::new(
                    Code::E008,
                    format!(
                        "[preflight] min_kernel `{}` is not a kernel version",
                        self.min_kernel
                    ),
                )
                .at(path, at("preflight", "min_kernel"))
                .hint("write `major.minor`, e.g. `min_kernel = \"5.10\"`"),
            );
        }
        if self.max_clock_offset_ms == 0 {
            out.push(
                Diagnostic::new(Code::E008, "[preflight] max_clock_offset_ms is 0")
                    .at(path, at("preflight", "max_clock_offset_ms"))
                    .hint("no two clocks agree to the millisecond; give at least 50, or remove the line for the default 500"),
            );
        }
        if !self.max_rtt_ms.is_finite() || self.max_rtt_ms <= 0.0 {
            out.push(
                Diagnostic::new(
                    Code::E008,
                    format!(
                        "[preflight] max_rtt_ms = {} is not a positive number of milliseconds",
                        self.max_rtt_ms
                    ),
                )
                .at(path, at("preflight", "max_rtt_ms"))
                .hint("give milliseconds above 0, e.g. `max_rtt_ms = 10`, or remove the line"),
            );
        }
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        for (name, o) in &self.roles {
            let table = format!("preflight.roles.{name}");
            let line = text.and_then(|t| {
                key_line(t, &table, "cpus").or_else(|| key_line(t, "preflight.roles", name))
            });
            if Role::parse(name).is_none() {
                out.push(
                    Diagnostic::new(
                        Code::E008,
                        format!("[preflight.roles.{name}]: `{name}` is not a role"),
                    )
                    .at(path, line)
                    .hint(format!(
                        "{}roles: {}",
                        super::did_you_mean(name, &names),
                        names.join(", ")
                    )),
                );
                continue;
            }
            if o.cpus == Some(0) {
                out.push(
                    Diagnostic::new(Code::E008, format!("[preflight.roles.{name}] cpus is 0"))
                        .at(path, text.and_then(|t| key_line(t, &table, "cpus")))
                        .hint("give at least 1, or remove the line for the role's default"),
                );
            }
            if o.disk_mb.is_some()
                && RoleMinimum::default_for(Role::parse(name).unwrap_or(Role::Lb))
                    .data
                    .is_none()
            {
                out.push(
                    Diagnostic::new(
                        Code::E008,
                        format!("[preflight.roles.{name}] disk_mb: the role keeps no data directory"),
                    )
                    .at(path, text.and_then(|t| key_line(t, &table, "disk_mb")))
                    .hint("remove the line; `[preflight] root_disk_mb` sets the free space every host needs on /"),
                );
            }
        }
        out
    }
}

/// `major.minor` of a kernel release (`6.1.0-18-amd64` is `(6, 1)`).
pub fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn parse(body: &str) -> Result<Config, Vec<Diagnostic>> {
        Config::parse("kbz.toml", &format!("[cluster]\nname = \"t\"\n\n{body}"))
    }

    #[test]
    fn defaults_and_overrides_per_role() {
        let c =
            parse("[preflight]\nmax_rtt_ms = 3\n\n[preflight.roles.postgres]\nmemory_mb = 8192\n")
                .unwrap();
        let p = &c.preflight;
        assert_eq!(p.max_rtt_ms, 3.0);
        assert_eq!(p.minimum(Role::Postgres).memory_mb, 8192);
        assert_eq!(p.minimum(Role::Postgres).cpus, 2);
        assert_eq!(p.minimum(Role::Etcd), RoleMinimum::default_for(Role::Etcd));
        let h = Host::new(
            "db1",
            "10.0.0.1".parse().unwrap(),
            &[Role::Etcd, Role::Postgres],
        );
        let n = p.needs(&h);
        assert_eq!(
            (n.cpus, n.memory_mb, n.memory_for.as_str()),
            (2, 8192, "postgres")
        );
        assert_eq!(
            n.disk,
            vec![
                ("/".into(), 4096, "base".into()),
                ("/var/lib/etcd".into(), 2048, "etcd".into()),
                ("/var/lib/postgresql".into(), 10240, "postgres".into()),
            ]
        );
    }

    #[test]
    fn bad_values_are_e008_with_their_line() {
        let e = parse(
            "[preflight]\nmin_kernel = \"new\"\nmax_clock_offset_ms = 0\n\n[preflight.roles.postgress]\ncpus = 4\n\n[preflight.roles.lb]\ncpus = 0\ndisk_mb = 10\n",
        )
        .unwrap_err();
        let lines: Vec<(String, Option<usize>)> = e
            .iter()
            .map(|d| (d.message.clone(), d.location.as_ref().and_then(|l| l.line)))
            .collect();
        assert!(e.iter().all(|d| d.code == Code::E008), "{lines:?}");
        assert_eq!(e.len(), 5, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|(m, l)| m.contains("min_kernel") && *l == Some(5)),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(m, l)| m.contains("max_clock_offset_ms") && *l == Some(6)),
            "{lines:?}"
        );
        assert!(
            e.iter()
                .any(|d| d.message.contains("`postgress` is not a role")
                    && d.hint
                        .as_deref()
                        .unwrap_or("")
                        .contains("did you mean `postgres`")
                    && d.location.as_ref().and_then(|l| l.line) == Some(9)),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(m, l)| m.contains("lb] cpus is 0") && *l == Some(12)),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(m, l)| m.contains("keeps no data directory") && *l == Some(13)),
            "{lines:?}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("[preflight]\nmax_rt_ms = 3\n").unwrap_err();
        assert_eq!(e[0].code, Code::E008);
        assert!(e[0].message.contains("max_rt_ms"), "{}", e[0].message);
        assert!(e[0].hint.as_deref().unwrap_or("").contains("max_rtt_ms"));
    }

    #[test]
    fn kernels() {
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("4.19"), Some((4, 19)));
        assert_eq!(parse_kernel("new"), None);
    }
}
