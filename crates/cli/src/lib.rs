//! kbz-cli: what every kbz binary shares, so that each binary only parses its arguments,
//! calls library code and returns an exit code.
//!
//! - [`args`]: the options every binary takes (`--inventory`, `--config`, `--state-dir`,
//!   `--json`, `-v`, `--accept-new-host-keys`).
//! - [`inputs`]: inventory + kbz.toml (or the bundled example), validated together, and the
//!   secrets file in the state directory.
//! - [`connect`]: the SSH connector, or the offline one that reaches no host.
//! - [`session`]: inputs -> secrets -> redacting log -> notifiers -> [`kbz_core::Context`].
//! - [`ui`]: diagnostics, progress bars, tables and JSON on stdout/stderr, confirmation.
//! - [`log`]: the redacting JSON log file `STATE_DIR/logs/<binary>.jsonl`.
//! - [`exit`]: the one exit-code table of every kbz binary (shown in each `--help`).
//! - [`health`]: "is the cluster healthy?" (kbz-health, and any binary that must know
//!   before it acts): the report, its table/JSON, Prometheus textfile and `/metrics` server,
//!   transition alerts and the systemd timer.
//! - [`cache`]: the controller's download cache (`STATE_DIR/cache`): the pins a run
//!   references, fetching them before hosts change, `kbz-install cache list | prune`.
//! - [`backup`]: kbz-backup's commands (run, list, verify, restore, drill, prune,
//!   schedule) over kbz-core's backup framework.
//! - [`failover`]: kbz-failover's `list` and `run` (health gate, faults, budgets, heal).
//! - [`lock`]: the controller's run lock and the per-host locks of a mutating command.
//! - [`preflight`]: the preflight table, the gate that stops a run on an error before any
//!   change, and the postflight port map (endpoints checked by connecting).
//! - [`install`]: kbz-install's subcommands (install, uninstall, validate, explain, rollback,
//!   notify test).
//! - [`menu`]: `kbz-install menu`, the terminal UI over the same probe, plan, install,
//!   health and explain.
//!
//! This crate is the binaries' half of kbz: it is the only library that prints. Failures are
//! a typed [`Failure`] (diagnostics with E-codes plus the exit code they map to).

pub mod args;
pub mod backup;
pub mod cache;
pub mod connect;
pub mod exit;
pub mod failover;
pub mod health;
pub mod inputs;
pub mod install;
pub mod lock;
pub mod log;
pub mod menu;
pub mod preflight;
pub mod session;
pub mod ui;

pub use args::Common;
pub use session::Session;

use kbz_errors::{Diagnostic, HasCode};

/// A failure a binary reports: the diagnostics to print and the exit code to return.
#[derive(Debug, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(|d| d.render_plain()).collect::<Vec<_>>().join("\n"))]
pub struct Failure {
    /// What went wrong, each with its E-code (never empty).
    pub diagnostics: Vec<Diagnostic>,
    /// The exit code (from [`exit`]).
    pub exit: u8,
}

impl Failure {
    /// A failure of one diagnostic.
    pub fn new(diagnostic: Diagnostic, exit: u8) -> Self {
        Failure {
            diagnostics: vec![diagnostic],
            exit,
        }
    }

    /// Invalid input (exit [`exit::INPUT`]).
    pub fn input(diagnostics: Vec<Diagnostic>) -> Self {
        Failure {
            diagnostics,
            exit: exit::INPUT,
        }
    }

    /// An error with a code, as invalid input.
    pub fn input_error(e: &(impl HasCode + std::fmt::Display)) -> Self {
        Failure::input(vec![e.to_diagnostic()])
    }

    /// Prints the diagnostics (stderr, or JSON on stdout) and returns the exit code.
    pub fn report(&self, json: bool) -> u8 {
        ui::diagnostics(&self.diagnostics, json);
        self.exit
    }
}

/// A multi-threaded tokio runtime for the binaries' async library calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                Diagnostic::new(
                    kbz_errors::Code::E021,
                    format!("cannot start the async runtime: {e}"),
                )
                .hint("the controller is out of threads or file descriptors; check `ulimit -n` and retry"),
                exit::FAILED,
            )
        })
}
