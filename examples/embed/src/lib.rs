//! A component written outside kbz's workspace tree, through kbz-core's public API only:
//! Debian's `prometheus-node-exporter`, bound to each host's private (inventory) address by a
//! rendered systemd drop-in, with a health check and an uninstall. `src/main.rs` plans and
//! applies it over SSH; docs/embedding.md walks through both files.
//!
//! The component is pure: it declares [`Resource`]s and probe scripts and judges probe
//! output. It never connects, prints or reads the environment; the engine does the rest.

use kbz_core::component::{Component, ComponentError, HealthCheck, HealthRaw, HealthStatus, Probe};
use kbz_core::errors::Code;
use kbz_core::{Context, Host, Resource};
use serde::Serialize;

/// The Debian package.
pub const PACKAGE: &str = "prometheus-node-exporter";
/// Its systemd unit (without `.service`).
pub const SERVICE: &str = "prometheus-node-exporter";
/// The unit's drop-in directory.
pub const DROPIN_DIR: &str = "/etc/systemd/system/prometheus-node-exporter.service.d";
/// The drop-in this component owns.
pub const DROPIN_FILE: &str = "/etc/systemd/system/prometheus-node-exporter.service.d/kbz.conf";
/// The port node_exporter serves `/metrics` on.
pub const PORT: u16 = 9100;
/// The module number: after the ten modules of kbz's own stack, so a tool that runs both
/// gets the exporter last (and removes it first).
pub const MODULE: u8 = 11;

const DROPIN_TEMPLATE: &str = include_str!("../templates/node-exporter.kbz.conf.hbs");

/// `host:port` node_exporter listens on: the host's inventory address (IPv6 bracketed).
pub fn listen_address(host: &Host) -> String {
    kbz_core::net::host_port(host.ip, PORT)
}

#[derive(Serialize)]
struct DropinVars {
    listen: String,
}

/// The systemd drop-in for `host`: it replaces the packaged `ExecStart` with one that adds
/// `--web.listen-address` (kept after Debian's `$ARGS`, so it wins over a listen address set
/// in /etc/default/prometheus-node-exporter).
pub fn dropin(host: &Host) -> Result<String, ComponentError> {
    kbz_core::template::render(
        "node-exporter.kbz.conf",
        DROPIN_TEMPLATE,
        &DropinVars {
            listen: listen_address(host),
        },
    )
}

/// Succeeds when the unit systemd has loaded already runs with this host's listen address,
/// so `systemctl daemon-reload` is needed only when the drop-in is new or changed. Evaluated
/// by the engine's probe, before anything of the run is applied.
fn loaded_with(host: &Host) -> String {
    format!(
        "systemctl show -p ExecStart --value {SERVICE}.service | grep -qF -- {}",
        kbz_core::command::quote(&format!("--web.listen-address={}", listen_address(host)))
    )
}

/// Module 11 of an embedding tool: node_exporter on every inventory host.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeExporter;

impl Component for NodeExporter {
    fn name(&self) -> &'static str {
        "node-exporter"
    }

    fn module(&self) -> u8 {
        MODULE
    }

    fn desired(&self, _ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        Ok(vec![
            // The drop-in lands before the package, so the package's first start already
            // listens on the private address only.
            Resource::file(DROPIN_FILE, dropin(host)?, 0o644),
            Resource::Command {
                id: "node-exporter-unit-reload".into(),
                script: "systemctl daemon-reload".into(),
                unless: Some(loaded_with(host)),
                creates: None,
                undo: Some("systemctl daemon-reload".into()),
            },
            Resource::package(PACKAGE),
            Resource::service(SERVICE, &[DROPIN_FILE]),
        ])
    }

    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        Ok(vec![
            Resource::stopped_service(SERVICE),
            Resource::absent_package(PACKAGE),
            Resource::absent_file(DROPIN_FILE),
            // systemd forgets the drop-in; the directory goes when nothing else is in it.
            Resource::Command {
                id: "node-exporter-unit-forget".into(),
                script: format!("rmdir {DROPIN_DIR} 2>/dev/null || true; systemctl daemon-reload"),
                unless: Some(format!("[ ! -e {DROPIN_DIR} ]")),
                creates: None,
                undo: None,
            },
        ])
    }

    fn health_probes(&self, _ctx: &Context, host: &Host) -> Vec<Probe> {
        vec![Probe::new("metrics", probe_script(host))]
    }

    fn health_checks(&self, _ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        let mut out = Vec::new();
        for h in raw.hosts() {
            let name = h.hostname.as_str();
            let Ok(answer) = raw.get(name, "metrics") else {
                continue;
            };
            let seen = parse_probe(&answer.text);
            let (ok, detail) = seen.verdict(&listen_address(h));
            out.push(HealthCheck::verdict(
                ok,
                HealthStatus::Degraded,
                self.name(),
                name,
                "metrics served",
                detail,
                Code::E040,
                format!(
                    "check `systemctl status {SERVICE}` and `journalctl -u {SERVICE} -n 50` on the host; re-run the tool to restore the drop-in"
                ),
            ));
        }
        out
    }
}

/// The read-only health probe: the unit's state, and how many `node_` series the exporter
/// serves on the private address (curl bounded to 5 s; reported missing, never guessed).
pub fn probe_script(host: &Host) -> String {
    let url = format!("{}/metrics", kbz_core::net::http_url(host.ip, PORT));
    format!(
        "printf 'active=%s\\n' \"$(systemctl is-active {SERVICE} 2>/dev/null)\"\n\
         if command -v curl >/dev/null 2>&1; then printf 'series=%s\\n' \"$(curl -fsS -m 5 {url} 2>/dev/null | grep -c '^node_')\"; else echo 'curl=missing'; fi",
        url = kbz_core::command::quote(&url)
    )
}

/// What the health probe saw on one host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    /// `systemctl is-active`: `active`, `inactive`, `failed`, ... (empty when not printed).
    pub active: String,
    /// `node_` series served, `None` when curl is missing or printed nothing.
    pub series: Option<u64>,
    /// curl is not installed on the host.
    pub curl_missing: bool,
}

impl Seen {
    /// Whether node_exporter serves metrics, and the detail shown to the operator.
    pub fn verdict(&self, listen: &str) -> (bool, String) {
        match (self.active.as_str(), self.series, self.curl_missing) {
            ("active", Some(n), _) if n > 0 => (true, format!("{n} node_ series on {listen}")),
            ("active", _, true) => (
                false,
                "the unit is active but curl is not installed on the host, so /metrics was not asked"
                    .into(),
            ),
            ("active", _, false) => (false, format!("the unit is active but {listen}/metrics serves no node_ series")),
            (state, _, _) => (
                false,
                format!(
                    "{SERVICE} is {}",
                    if state.is_empty() { "not known to systemd" } else { state }
                ),
            ),
        }
    }
}

/// Parses [`probe_script`]'s output (`active=...`, `series=N` or `curl=missing`).
pub fn parse_probe(text: &str) -> Seen {
    let mut seen = Seen::default();
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("active=") {
            seen.active = v.to_string();
        } else if let Some(v) = line.strip_prefix("series=") {
            seen.series = v.parse().ok();
        } else if line == "curl=missing" {
            seen.curl_missing = true;
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(ip: &str) -> Host {
        Host::new("node1", ip.parse().expect("ip"), &[])
    }

    #[test]
    fn the_dropin_binds_the_private_address() {
        let d = dropin(&host("10.0.0.11")).expect("render");
        assert!(
            d.contains("[Service]\nExecStart=\nExecStart=/usr/bin/prometheus-node-exporter $ARGS --web.listen-address=10.0.0.11:9100\n"),
            "{d}"
        );
        let v6 = dropin(&host("fd00::11")).expect("render");
        assert!(
            v6.contains("--web.listen-address=[fd00::11]:9100\n"),
            "{v6}"
        );
    }

    #[test]
    fn the_reload_guard_looks_for_this_hosts_address() {
        let g = loaded_with(&host("10.0.0.11"));
        assert!(g.contains("--web.listen-address=10.0.0.11:9100"), "{g}");
        kbz_testkit::assert_valid_sh([g, probe_script(&host("10.0.0.11"))]);
    }

    #[test]
    fn probe_output_is_judged() {
        let ok = parse_probe("active=active\nseries=312\n");
        assert_eq!(ok.series, Some(312));
        assert!(ok.verdict("10.0.0.11:9100").0);
        let none = parse_probe("active=active\nseries=0\n");
        assert!(!none.verdict("x").0);
        let (ok, detail) = parse_probe("active=inactive\nseries=0\n").verdict("x");
        assert!(!ok && detail.contains("is inactive"), "{detail}");
        let (ok, detail) = parse_probe("active=active\ncurl=missing\n").verdict("x");
        assert!(!ok && detail.contains("curl is not installed"), "{detail}");
        let (ok, detail) = parse_probe("").verdict("x");
        assert!(!ok && detail.contains("not known to systemd"), "{detail}");
    }
}
