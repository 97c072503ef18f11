//! The `Notifier` trait and message levels. Implementations live in `kbz-notify`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Severity, ordered: debug < info < warn < error < critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Diagnostics.
    Debug,
    /// Normal progress (install started, finished).
    Info,
    /// Degraded but working.
    Warn,
    /// Something failed.
    Error,
    /// Data or availability at risk now.
    Critical,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        })
    }
}

/// The outcome of sending to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Target name.
    pub target: String,
    /// `Ok(())` when delivered, else why not (never containing a secret).
    pub result: Result<(), String>,
}

/// Sends a message to wherever operators look. Never fails the caller: the outcome per
/// target is returned for display.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends to every target whose filter passes `level`.
    async fn notify(&self, level: Level, title: &str, message: &str) -> Vec<Delivery>;
}

/// A notifier that sends nothing (no targets configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNotifier;

#[async_trait]
impl Notifier for NoNotifier {
    async fn notify(&self, _level: Level, _title: &str, _message: &str) -> Vec<Delivery> {
        Vec::new()
    }
}
