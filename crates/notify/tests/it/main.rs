//! Integration tests of kbz-notify against real servers on loopback: an HTTP receiver
//! (axum) standing in for Slack, Discord, Telegram and webhooks, and a real SMTP server
//! (Debian's python3-aiosmtpd) receiving email. Nothing here contacts the internet.

mod email;
mod http_channels;
mod receiver;
mod resilience;
mod secrets;
mod smtp;

use std::collections::BTreeMap;
use std::time::Duration;

use kbz_core::config::NotifyTarget;
use kbz_core::{Level, Secret, Secrets};
use kbz_notify::{Notifiers, RetryPolicy};

/// A target with defaults: min level debug, enabled, 5 s timeout.
pub fn target(name: &str, url: &str) -> NotifyTarget {
    NotifyTarget {
        name: name.into(),
        url: url.into(),
        min_level: Level::Debug,
        enabled: true,
        timeout_secs: 5,
        options: BTreeMap::new(),
    }
}

/// `target` with one option set.
pub fn with_option(mut t: NotifyTarget, key: &str, value: &str) -> NotifyTarget {
    t.options.insert(key.into(), value.into());
    t
}

/// Three attempts with a 10 ms base delay, so retry tests stay fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
    }
}

/// A secrets store holding `pairs`.
pub fn secrets(pairs: &[(&str, &str)]) -> Secrets {
    let mut s = Secrets::in_memory();
    for (k, v) in pairs {
        s.set(k, Secret::new(*v));
    }
    s
}

/// Notifiers for `targets`, server `prod`, fast retries.
pub fn notifiers(targets: &[NotifyTarget], secrets: &Secrets) -> Notifiers {
    Notifiers::new(targets, secrets)
        .expect("targets build")
        .with_server("prod")
        .with_retry(fast_retry())
}

/// Insta filters for values that change per run.
pub fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[TIME]"),
        (r#""ts": \d+"#, r#""ts": "[TS]""#),
        (r"kbz \d+\.\d+\.\d+", "kbz [VERSION]"),
        (r#""version": "\d+\.\d+\.\d+""#, r#""version": "[VERSION]""#),
        (r"kbz/\d+\.\d+\.\d+", "kbz/[VERSION]"),
    ]
}
