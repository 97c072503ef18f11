//! `Notifiers`: the [`Notifier`] of kbz. Fans one message out to every target whose filter
//! passes, concurrently, each target bounded by its own timeout and retry policy, and
//! reports one [`Delivery`] per target; it never fails its caller.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use kbz_core::config::NotifyTarget;
use kbz_core::notifier::Delivery;
use kbz_core::{Level, Notifier, Secrets};
use kbz_errors::HasCode;
use reqwest::header::HeaderMap;
use reqwest::Client;
use tokio::task::JoinSet;

use crate::channels::{discord, email, slack, telegram, webhook};
use crate::error::NotifyError;
use crate::events::Event;
use crate::http::{self, HttpCtx};
use crate::message::Message;
use crate::retry::{GaveUp, RetryPolicy};
use crate::target::{build_all, Channel, ChannelKind, Target};

/// The default `server` shown in messages when the caller sets none.
const DEFAULT_SERVER: &str = "kbz";

/// Every configured target, ready to send.
#[derive(Clone)]
pub struct Notifiers {
    targets: Vec<Arc<Target>>,
    http: Client,
    retry: RetryPolicy,
    server: String,
}

impl fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifiers")
            .field("targets", &self.targets)
            .field("retry", &self.retry)
            .field("server", &self.server)
            .finish()
    }
}

impl Notifiers {
    /// Builds every `[[notify]]` target of kbz.toml, resolving `{secret:NAME}` placeholders
    /// from `secrets`. Fails on the first unusable target (E008, or E052 for a missing
    /// secret) so that configuration mistakes surface before an install, not during it.
    pub fn new(targets: &[NotifyTarget], secrets: &Secrets) -> Result<Self, NotifyError> {
        let targets = build_all(targets, secrets)?;
        let http = Client::builder()
            .user_agent(concat!("kbz/", env!("CARGO_PKG_VERSION")))
            // A webhook that redirects is misconfigured; following would also turn the POST
            // into a GET and log URLs (which hold tokens) at debug level.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Client(e.without_url().to_string()))?;
        Ok(Notifiers {
            targets: targets.into_iter().map(Arc::new).collect(),
            http,
            retry: RetryPolicy::default(),
            server: DEFAULT_SERVER.to_string(),
        })
    }

    /// Sets the server or cluster name shown in every message (default `kbz`); kbz-install
    /// passes `cluster.name`.
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = server.into();
        self
    }

    /// Sets the retry policy (default: 3 attempts, 500 ms base delay).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The targets, in kbz.toml order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().map(|t| t.as_ref())
    }

    /// True when no target is configured at all.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// True when at least one target is enabled.
    pub fn has_enabled(&self) -> bool {
        self.targets.iter().any(|t| t.enabled)
    }

    /// Sends an [`Event`] (see the helpers in [`crate::events`]).
    pub async fn send(&self, event: &Event) -> Vec<Delivery> {
        self.notify(event.level, &event.title, &event.message).await
    }

    /// Sends a test message to every enabled target, whatever its level filter, and reports
    /// each outcome; disabled targets are listed as such and not contacted.
    pub async fn test_all(&self) -> TestReport {
        let mut jobs = Vec::new();
        for t in self.targets.iter().filter(|t| t.enabled) {
            let msg = Message::new(
                Level::Info,
                "Test notification from kbz",
                &format!(
                    "If you can read this, notification target `{}` ({}) works.\n\
                     Sent by `kbz-install notify test`.",
                    t.name,
                    t.kind()
                ),
                &self.server,
            );
            jobs.push((Arc::clone(t), msg));
        }
        let deliveries = self.fan_out(jobs).await;
        let results = self
            .targets
            .iter()
            .map(|t| {
                let outcome = if !t.enabled {
                    TestOutcome::Disabled
                } else {
                    match deliveries.iter().find(|d| d.target == t.name) {
                        Some(Delivery { result: Ok(()), .. }) => TestOutcome::Delivered,
                        Some(Delivery {
                            result: Err(reason),
                            ..
                        }) => TestOutcome::Failed(reason.clone()),
                        None => TestOutcome::Failed("no outcome recorded".into()),
                    }
                };
                TestResult {
                    target: t.name.clone(),
                    kind: t.kind(),
                    outcome,
                }
            })
            .collect();
        TestReport { results }
    }

    /// Sends each message to its target concurrently; results come back in input order.
    async fn fan_out(&self, jobs: Vec<(Arc<Target>, Message)>) -> Vec<Delivery> {
        let mut set = JoinSet::new();
        let names: Vec<String> = jobs.iter().map(|(t, _)| t.name.clone()).collect();
        for (i, (target, msg)) in jobs.into_iter().enumerate() {
            let http = self.http.clone();
            let retry = self.retry;
            set.spawn(async move {
                let msg = Message {
                    title: target.redact(&msg.title),
                    text: target.redact(&msg.text),
                    server: target.redact(&msg.server),
                    ..msg
                };
                let result = deliver(&target, &msg, &http, retry).await;
                (i, result)
            });
        }
        let mut results: Vec<Option<Result<(), String>>> = vec![None; names.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, r)) => results[i] = Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "a notification task failed");
                }
            }
        }
        names
            .into_iter()
            .zip(results)
            .map(|(target, r)| Delivery {
                target,
                result: r.unwrap_or_else(|| Err("internal error: the delivery task failed".into())),
            })
            .collect()
    }
}

#[async_trait]
impl Notifier for Notifiers {
    async fn notify(&self, level: Level, title: &str, message: &str) -> Vec<Delivery> {
        let msg = Message::new(level, title, message, &self.server);
        let mut jobs = Vec::new();
        for t in &self.targets {
            if t.accepts(level) {
                jobs.push((Arc::clone(t), msg.clone()));
            } else if !t.enabled {
                tracing::debug!(target_name = %t.name, "notification target disabled; skipped");
            } else {
                tracing::debug!(
                    target_name = %t.name,
                    %level,
                    min_level = %t.min_level,
                    "notification below the target's min_level; skipped"
                );
            }
        }
        self.fan_out(jobs).await
    }
}

/// Delivers one message to one target, logging the outcome; the error text is redacted.
async fn deliver(
    target: &Target,
    msg: &Message,
    http: &Client,
    retry: RetryPolicy,
) -> Result<(), String> {
    let kind = target.kind();
    tracing::debug!(target_name = %target.name, channel = %kind, level = %msg.level, "sending notification");
    let outcome = send(target, msg, http, retry).await;
    match outcome {
        Ok(()) => {
            tracing::debug!(target_name = %target.name, channel = %kind, "notification delivered");
            Ok(())
        }
        Err(gave_up) => {
            let mut reason = target.redact(&gave_up.error.to_delivery_reason());
            if gave_up.attempts > 1 {
                reason.push_str(&format!(" (after {} attempts)", gave_up.attempts));
            }
            tracing::warn!(
                target_name = %target.name,
                channel = %kind,
                code = %gave_up.error.code(),
                reason = %reason,
                "notification not delivered"
            );
            Err(reason)
        }
    }
}

/// The channel-specific part of a delivery.
async fn send(
    target: &Target,
    msg: &Message,
    client: &Client,
    retry: RetryPolicy,
) -> Result<(), GaveUp> {
    let ctx = HttpCtx {
        client,
        retry,
        timeout: target.timeout,
        redactor: &target.redactor,
        target: &target.name,
    };
    let no_headers = HeaderMap::new();
    match &target.channel {
        Channel::Slack(c) if c.channels.is_empty() => {
            let body = slack::payload(msg, c.username.as_deref(), None);
            http::post_json(ctx, &c.endpoint.url, &no_headers, &body).await
        }
        Channel::Slack(c) => {
            // Every channel gets its chance; the first failure is reported.
            let mut first_failure = None;
            for channel in &c.channels {
                let body = slack::payload(msg, c.username.as_deref(), Some(channel));
                if let Err(g) = http::post_json(ctx, &c.endpoint.url, &no_headers, &body).await {
                    first_failure.get_or_insert(GaveUp {
                        error: annotate_channel(g.error, channel),
                        attempts: g.attempts,
                    });
                }
            }
            first_failure.map_or(Ok(()), Err)
        }
        Channel::Discord(c) => {
            let body = discord::payload(msg, c.username.as_deref());
            http::post_json(ctx, &c.endpoint.url, &no_headers, &body).await
        }
        Channel::Telegram(c) => {
            // Every chat gets its chance even when an earlier one fails; the first failure
            // is reported.
            let parts = telegram::parts(msg);
            let n = parts.len();
            let mut first_failure = None;
            for chat in &c.chat_ids {
                for (i, part) in parts.iter().enumerate() {
                    let body = telegram::payload(chat, part);
                    if let Err(g) = http::post_json(ctx, &c.endpoint.url, &no_headers, &body).await
                    {
                        first_failure.get_or_insert(GaveUp {
                            error: annotate(g.error, chat, i + 1, n),
                            attempts: g.attempts,
                        });
                        break;
                    }
                }
            }
            first_failure.map_or(Ok(()), Err)
        }
        Channel::Email(c) => {
            email::send(
                c,
                msg,
                retry,
                target.timeout,
                &target.redactor,
                &target.name,
            )
            .await
        }
        Channel::Webhook(c) => {
            let body = webhook::payload(msg);
            http::post_json(ctx, &c.endpoint.url, &c.headers, &body).await
        }
    }
}

/// Says which chat and part of a Telegram message failed.
fn annotate(error: NotifyError, chat: &str, part: usize, parts: usize) -> NotifyError {
    let where_ = if parts > 1 {
        format!(" (chat {chat}, part {part}/{parts})")
    } else {
        format!(" (chat {chat})")
    };
    append(error, &where_)
}

/// Says which Slack channel failed.
fn annotate_channel(error: NotifyError, channel: &str) -> NotifyError {
    append(error, &format!(" (channel {channel})"))
}

/// Appends `where_` to the detail of a delivery error.
fn append(error: NotifyError, where_: &str) -> NotifyError {
    match error {
        NotifyError::Status { status, detail } => NotifyError::Status {
            status,
            detail: format!("{detail}{where_}"),
        },
        NotifyError::Transport(t) => NotifyError::Transport(format!("{t}{where_}")),
        other => other,
    }
}

/// The outcome of `notify test` for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// The service accepted the message.
    Delivered,
    /// It did not; the reason starts with the E-code and holds no secret.
    Failed(String),
    /// The target is disabled in kbz.toml and was not contacted.
    Disabled,
}

/// One target's line of the `notify test` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// Target name.
    pub target: String,
    /// Channel kind.
    pub kind: ChannelKind,
    /// What happened.
    pub outcome: TestOutcome,
}

impl fmt::Display for TestResult {
    /// `✓ name (slack)`, `✗ name (slack): reason` or `- name (slack): disabled, not tested`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            TestOutcome::Delivered => write!(f, "✓ {} ({})", self.target, self.kind),
            TestOutcome::Failed(reason) => {
                write!(f, "✗ {} ({}): {reason}", self.target, self.kind)
            }
            TestOutcome::Disabled => {
                write!(f, "- {} ({}): disabled, not tested", self.target, self.kind)
            }
        }
    }
}

/// The `notify test` report, one entry per configured target in kbz.toml order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestReport {
    /// Per-target results.
    pub results: Vec<TestResult>,
}

impl TestReport {
    /// True when no enabled target failed (disabled targets do not count).
    pub fn all_delivered(&self) -> bool {
        !self
            .results
            .iter()
            .any(|r| matches!(r.outcome, TestOutcome::Failed(_)))
    }

    /// The number of failed targets.
    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, TestOutcome::Failed(_)))
            .count()
    }

    /// One display line per target (see [`TestResult`]'s `Display`).
    pub fn lines(&self) -> Vec<String> {
        self.results.iter().map(|r| r.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(name: &str, min: Level, enabled: bool) -> NotifyTarget {
        NotifyTarget {
            name: name.into(),
            // Port 9 (discard) on loopback: nothing listens, connections are refused fast.
            url: "json://127.0.0.1:9/hook".into(),
            min_level: min,
            enabled,
            timeout_secs: 2,
            options: BTreeMap::new(),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            base_delay: std::time::Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn level_filter_and_disabled_targets_decide_who_is_contacted() {
        let n = Notifiers::new(
            &[
                target("all", Level::Debug, true),
                target("errors", Level::Error, true),
                target("off", Level::Debug, false),
            ],
            &Secrets::in_memory(),
        )
        .expect("build")
        .with_retry(fast());
        let names = |d: Vec<Delivery>| d.into_iter().map(|d| d.target).collect::<Vec<_>>();
        assert_eq!(names(n.notify(Level::Info, "t", "m").await), vec!["all"]);
        assert_eq!(
            names(n.notify(Level::Critical, "t", "m").await),
            vec!["all", "errors"]
        );
        assert!(n.notify(Level::Debug, "t", "m").await.len() == 1);
    }

    #[tokio::test]
    async fn refused_connections_fail_with_e020_after_retries() {
        let n = Notifiers::new(&[target("x", Level::Info, true)], &Secrets::in_memory())
            .expect("build")
            .with_retry(fast());
        let d = n.notify(Level::Error, "t", "m").await;
        let reason = d[0].result.clone().expect_err("refused");
        assert!(reason.starts_with("E020: request failed"), "{reason}");
        assert!(reason.ends_with("(after 2 attempts)"), "{reason}");
        assert!(!reason.contains("127.0.0.1:9/hook"), "{reason}");
    }

    #[tokio::test]
    async fn test_report_lines() {
        let n = Notifiers::new(
            &[
                target("x", Level::Critical, true),
                target("off", Level::Debug, false),
            ],
            &Secrets::in_memory(),
        )
        .expect("build")
        .with_retry(fast());
        let report = n.test_all().await;
        assert!(!report.all_delivered());
        assert_eq!(report.failed(), 1);
        let lines = report.lines();
        assert!(lines[0].starts_with("✗ x (webhook): E020: "), "{lines:?}");
        assert_eq!(lines[1], "- off (webhook): disabled, not tested");
    }

    #[test]
    fn no_targets() {
        let n = Notifiers::new(&[], &Secrets::in_memory()).expect("build");
        assert!(n.is_empty());
        assert!(!n.has_enabled());
        assert!(TestReport::default().all_delivered());
    }
}
