//! kbz-notify: Slack, Discord, Telegram, email (SMTP) and JSON webhook notifications with
//! per-target level filters, concurrent fan-out, timeouts, retries and secret masking.
//!
//! Build [`Notifiers`] from the `[[notify]]` targets of kbz.toml and the secrets file, then
//! send through the [`kbz_core::Notifier`] trait or with the [`Event`] helpers:
//!
//! ```no_run
//! # async fn demo(cfg: &kbz_core::Config, secrets: &kbz_core::Secrets) -> Result<(), kbz_notify::NotifyError> {
//! use kbz_notify::{Event, Notifiers};
//! let notifiers = Notifiers::new(&cfg.notify, secrets)?.with_server(&cfg.cluster.name);
//! let deliveries = notifiers.send(&Event::install_started(&cfg.cluster.name, 6, &[])).await;
//! for d in deliveries {
//!     if let Err(reason) = d.result {
//!         tracing::warn!(target_name = %d.target, %reason, "notification failed");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Invariants: sending never fails the caller (each target's outcome is a
//! [`kbz_core::notifier::Delivery`]); one target never delays another (they run
//! concurrently, each bounded by its own `timeout_secs` per attempt); no secret appears in a
//! `Debug` output, an error, a delivery reason or a log line. URL forms and options are
//! documented in docs/notifications.md.

mod channels;
mod error;
pub mod events;
mod http;
mod message;
mod notifiers;
mod redact;
mod retry;
mod target;
mod url_parse;

pub use error::NotifyError;
pub use events::{BackupSummary, Event, FailoverSummary, HealthCheck, HealthStatus};
pub use message::{truncate_visible, truncation_marker, Message};
pub use notifiers::{Notifiers, TestOutcome, TestReport, TestResult};
pub use retry::RetryPolicy;
pub use target::{ChannelKind, Target};
