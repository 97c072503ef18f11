//! Preflight: what every host must offer its roles, checked in one batched round trip per
//! host before anything changes, and the postflight port map.
//!
//! - Components say what they bind as data ([`Listen`], from
//!   [`crate::Component::listens`]) and which files betray a conflicting install
//!   ([`Conflict`], from [`crate::Component::conflicts`]); the minimums per role come from
//!   `[preflight]` of kbz.toml ([`crate::config::PreflightConfig`]).
//! - [`script`] builds the one POSIX sh script a host runs and parses its answer strictly (an
//!   unexpected line is E081, never ignored); [`judge`] compares the answers with the needs,
//!   host by host and across hosts (clock offsets, MTUs of quorum members); [`run`] does the
//!   round trips concurrently; [`portmap`] lists every endpoint after an install.

use kbz_errors::Code;
use serde::Serialize;
use std::collections::BTreeMap;

pub mod judge;
pub mod portmap;
pub mod run;
pub mod script;

pub use crate::ports::{Conflict, Listen, Severity};
pub use run::{check, plan, Planned};

/// One problem the preflight found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Host (or `-` for the fleet).
    pub host: String,
    /// What was checked (`memory`, `port 5432`).
    pub check: String,
    /// Error or warning.
    pub severity: Severity,
    /// Catalogue code.
    pub code: Code,
    /// What was found against what was needed.
    pub detail: String,
    /// What to do.
    pub fix: String,
}

impl Finding {
    /// A finding.
    pub fn new(
        host: &str,
        check: impl Into<String>,
        severity: Severity,
        code: Code,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            host: host.into(),
            check: check.into(),
            severity,
            code,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

/// The outcome of a preflight over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Every problem of every host, errors first, then by host.
    pub findings: Vec<Finding>,
    /// Checks that passed, per host.
    pub passed: BTreeMap<String, usize>,
    /// Round trips per host (one for a host that answered).
    pub round_trips: BTreeMap<String, u32>,
}

impl Report {
    /// The errors (they stop an install).
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    /// The warnings.
    pub fn warnings(&self) -> usize {
        self.findings.len() - self.errors()
    }

    /// True when nothing stops the install.
    pub fn ok(&self) -> bool {
        self.errors() == 0
    }

    /// Sorts the findings: errors first, then by host and check, in a stable order.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.host.cmp(&b.host))
                .then_with(|| a.check.cmp(&b.check))
        });
    }
}
