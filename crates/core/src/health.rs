//! Health checks as data, and the one batched round trip per host that feeds them: each
//! component names read-only probes per host ([`crate::Component::health_probes`]), the
//! probes of every component are joined into one script per host ([`host_script`]), its
//! output is split back per probe ([`split_output`]), and each component turns the raw
//! outputs of every host into checks on the controller ([`crate::Component::health_checks`]).
//! Running it on hosts is [`crate::health_run`].

use kbz_errors::Code;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::inventory::Host;

/// The state of one check, ordered from good to bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working as intended.
    Ok,
    /// Redundancy lost, the service still answers (a replica down, a member lagging).
    Degraded,
    /// A service is unavailable (no quorum, no leader, a VIP held by nobody).
    Down,
}

impl HealthStatus {
    /// `ok`, `degraded`, `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Down => "down",
        }
    }

    /// Parses [`HealthStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(HealthStatus::Ok),
            "degraded" => Some(HealthStatus::Degraded),
            "down" => Some(HealthStatus::Down),
            _ => None,
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host column of a check about the whole cluster rather than one host.
pub const CLUSTER: &str = "-";

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheck {
    /// Host checked, or [`CLUSTER`] for a cluster-wide check.
    pub host: String,
    /// Component (`etcd`, `postgres`).
    pub component: String,
    /// What was checked (`member`, `leader`, `replica streaming`).
    pub check: String,
    /// The outcome.
    pub status: HealthStatus,
    /// Detail shown to the operator.
    pub detail: String,
    /// Catalogue code when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// What to do when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Figures measured by the check (`replication_lag_bytes`), exported to Prometheus.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl HealthCheck {
    /// A passing check.
    pub fn ok(component: &str, host: &str, check: &str, detail: impl Into<String>) -> Self {
        HealthCheck {
            host: host.into(),
            component: component.into(),
            check: check.into(),
            status: HealthStatus::Ok,
            detail: detail.into(),
            code: None,
            fix: None,
            metrics: BTreeMap::new(),
        }
    }

    /// A failing check with its level, code and fix.
    pub fn failing(
        status: HealthStatus,
        component: &str,
        host: &str,
        check: &str,
        detail: impl Into<String>,
        code: Code,
        fix: impl Into<String>,
    ) -> Self {
        HealthCheck {
            status,
            code: Some(code),
            fix: Some(fix.into()),
            ..HealthCheck::ok(component, host, check, detail)
        }
    }

    /// The check passes when `ok`, otherwise fails at `status` with `code` and `fix`.
    #[allow(clippy::too_many_arguments)]
    pub fn verdict(
        ok: bool,
        status: HealthStatus,
        component: &str,
        host: &str,
        check: &str,
        detail: impl Into<String>,
        code: Code,
        fix: impl Into<String>,
    ) -> Self {
        if ok {
            HealthCheck::ok(component, host, check, detail)
        } else {
            HealthCheck::failing(status, component, host, check, detail, code, fix)
        }
    }

    /// Adds a measured figure.
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }

    /// Passing.
    pub fn is_ok(&self) -> bool {
        self.status == HealthStatus::Ok
    }
}

/// The worst status of a set of checks (`Ok` when empty).
pub fn worst(checks: &[HealthCheck]) -> HealthStatus {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Ok)
}

/// One read-only probe a component runs on a host: a name unique within the component and a
/// shell script (stdout and stderr are captured together; it must bound its own run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Name (`status`, `stats`).
    pub name: String,
    /// The script.
    pub script: String,
}

impl Probe {
    /// A probe.
    pub fn new(name: &str, script: impl Into<String>) -> Self {
        Probe {
            name: name.into(),
            script: script.into(),
        }
    }
}

/// What one probe printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeOutput {
    /// stdout and stderr together.
    pub text: String,
    /// Exit status of the probe script.
    pub status: i32,
}

impl ProbeOutput {
    /// Exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// One host's answer to the batched script.
#[derive(Debug, Clone)]
pub struct HostAnswer {
    /// The inventory host.
    pub host: Host,
    /// Probe outputs keyed by (component, probe), or why the host could not be asked.
    pub result: Result<BTreeMap<(String, String), ProbeOutput>, String>,
}

/// The raw health data of one component: the answers of the hosts it applies to.
#[derive(Debug, Clone, Copy)]
pub struct HealthRaw<'a> {
    component: &'a str,
    answers: &'a [HostAnswer],
}

impl<'a> HealthRaw<'a> {
    /// The raw data `component` sees in `answers` (callers pass only the hosts it applies to).
    pub fn new(component: &'a str, answers: &'a [HostAnswer]) -> Self {
        HealthRaw { component, answers }
    }

    /// The hosts, in inventory order.
    pub fn hosts(&self) -> impl Iterator<Item = &'a Host> {
        self.answers.iter().map(|a| &a.host)
    }

    /// A probe's output on a host: `Err` with the reason when the host could not be asked or
    /// the probe is missing from its answer.
    pub fn get(&self, host: &str, probe: &str) -> Result<&'a ProbeOutput, String> {
        let a = self
            .answers
            .iter()
            .find(|a| a.host.hostname == host)
            .ok_or_else(|| format!("{host} was not asked"))?;
        match &a.result {
            Err(_) => Err(format!("{host} could not be asked (see its ssh row)")),
            Ok(map) => map
                .get(&(self.component.to_string(), probe.to_string()))
                .ok_or_else(|| format!("no `{probe}` section in the answer of {host}")),
        }
    }
}

/// The marker line that opens a probe's section.
const MARK: &str = "@@kbz-health ";
/// The marker line that closes it, followed by the probe's exit status.
const MARK_RC: &str = "@@kbz-health-rc ";

/// The one script a host runs: every probe in its own subshell (stdin closed, stderr into
/// stdout), each section opened by `@@kbz-health COMPONENT PROBE` and closed by
/// `@@kbz-health-rc STATUS`. The script itself always exits 0.
pub fn host_script(probes: &[(String, Probe)]) -> String {
    let mut s = String::from("# kbz-health batched probes\n");
    for (component, p) in probes {
        s.push_str(&format!(
            "echo '{MARK}{component} {}'\n(\n{}\n) </dev/null 2>&1\necho \"{MARK_RC}$?\"\n",
            p.name,
            p.script.trim_end()
        ));
    }
    s.push_str("exit 0\n");
    s
}

/// Splits the output of [`host_script`] per (component, probe). A section cut short (no
/// closing marker) keeps what it printed, with status -1.
pub fn split_output(stdout: &str) -> BTreeMap<(String, String), ProbeOutput> {
    let mut out = BTreeMap::new();
    let mut current: Option<((String, String), String)> = None;
    for raw in stdout.lines() {
        // A probe whose output does not end in a newline (curl) leaves the closing marker on
        // its last line.
        let (line, tail) = match raw.find(MARK_RC) {
            Some(i) if i > 0 => (&raw[i..], Some(&raw[..i])),
            _ => (raw, None),
        };
        if let (Some(t), Some((_, text))) = (tail, current.as_mut()) {
            text.push_str(t);
            text.push('\n');
        }
        if let Some(rest) = line.strip_prefix(MARK) {
            if let Some((key, text)) = current.take() {
                out.insert(key, ProbeOutput { text, status: -1 });
            }
            let (c, p) = rest.split_once(' ').unwrap_or((rest, ""));
            current = Some(((c.to_string(), p.to_string()), String::new()));
        } else if let Some(rc) = line.strip_prefix(MARK_RC) {
            if let Some((key, text)) = current.take() {
                let status = rc.trim().parse().unwrap_or(-1);
                out.insert(key, ProbeOutput { text, status });
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((key, text)) = current {
        out.insert(key, ProbeOutput { text, status: -1 });
    }
    out
}

/// What a host running [`host_script`] prints for these (component, probe, text, status)
/// sections: the inverse of [`split_output`], for test doubles.
pub fn render_output(sections: &[(&str, &str, &str, i32)]) -> String {
    let mut s = String::new();
    for (c, p, text, rc) in sections {
        // As on a host: output without a final newline leaves the marker on its last line.
        s.push_str(&format!("{MARK}{c} {p}\n{text}{MARK_RC}{rc}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_through_the_script_markers() {
        let probes = vec![
            (
                "etcd".to_string(),
                Probe::new("status", "etcdctl endpoint status"),
            ),
            ("base".to_string(), Probe::new("swap", "cat /proc/swaps")),
        ];
        let s = host_script(&probes);
        assert!(s.contains("echo '@@kbz-health etcd status'\n(\netcdctl endpoint status\n) </dev/null 2>&1\necho \"@@kbz-health-rc $?\"\n"), "{s}");
        let out = "@@kbz-health etcd status\n[{\"a\":1}]@@kbz-health-rc 0\n@@kbz-health base swap\nFilename\n/swap\n@@kbz-health-rc 3\n@@kbz-health redis gather\ncut";
        let m = split_output(out);
        let get = |c: &str, p: &str| m.get(&(c.to_string(), p.to_string())).cloned();
        assert_eq!(
            get("etcd", "status"),
            Some(ProbeOutput {
                text: "[{\"a\":1}]\n".into(),
                status: 0
            })
        );
        assert_eq!(get("base", "swap").map(|o| o.status), Some(3));
        assert_eq!(get("redis", "gather").map(|o| o.status), Some(-1));
    }

    #[test]
    fn levels_order_from_ok_to_down() {
        let ok = HealthCheck::ok("etcd", "db1", "member", "fine");
        let bad = HealthCheck::failing(
            HealthStatus::Down,
            "etcd",
            CLUSTER,
            "quorum",
            "lost",
            Code::E036,
            "start members",
        );
        assert_eq!(worst(&[]), HealthStatus::Ok);
        assert_eq!(worst(std::slice::from_ref(&ok)), HealthStatus::Ok);
        assert_eq!(worst(&[ok, bad]), HealthStatus::Down);
        assert_eq!(
            HealthStatus::parse("degraded"),
            Some(HealthStatus::Degraded)
        );
    }
}
