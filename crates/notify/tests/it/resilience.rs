//! Retries, `Retry-After`, timeouts and isolation against real misbehaving endpoints, and
//! the `notify test` report.

use std::time::{Duration, Instant};

use kbz_core::{Level, Notifier};
use kbz_notify::TestOutcome;

use crate::receiver::{Receiver, Reply};
use crate::{notifiers, secrets, target, with_option};

/// A generous guard against hangs; never a performance assertion.
const HANG_GUARD: Duration = Duration::from_secs(10);

fn hook(name: &str, rx: &Receiver) -> kbz_core::config::NotifyTarget {
    target(name, &format!("json://{}/hook", rx.addr))
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let rx = Receiver::start(|_, _| Reply::Status(500, "boom"));
    let d = notifiers(&[hook("flaky", &rx)], &secrets(&[]))
        .notify(Level::Error, "t", "m")
        .await;
    assert_eq!(rx.requests().len(), 3, "three attempts");
    assert_eq!(
        d[0].result,
        Err("E020: HTTP 500 Internal Server Error: boom (after 3 attempts)".to_string())
    );
}

#[tokio::test]
async fn a_transient_error_then_success_is_delivered() {
    let rx = Receiver::start(|n, _| {
        if n == 0 {
            Reply::Status(503, "")
        } else {
            Reply::Status(204, "")
        }
    });
    let d = notifiers(&[hook("h", &rx)], &secrets(&[]))
        .notify(Level::Error, "t", "m")
        .await;
    assert_eq!(d[0].result, Ok(()));
    assert_eq!(rx.requests().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let rx =
        Receiver::start(|_, _| Reply::Status(404, r#"{"ok":false,"description":"Not Found"}"#));
    let d = notifiers(&[hook("gone", &rx)], &secrets(&[]))
        .notify(Level::Error, "t", "m")
        .await;
    assert_eq!(rx.requests().len(), 1);
    let reason = d[0].result.clone().expect_err("404");
    assert_eq!(reason, "E020: HTTP 404 Not Found: Not Found");
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_delivers() {
    let rx = Receiver::start(|n, _| {
        if n == 0 {
            Reply::RetryAfter(1)
        } else {
            Reply::Status(200, "ok")
        }
    });
    let started = Instant::now();
    let d = notifiers(&[hook("limited", &rx)], &secrets(&[]))
        .notify(Level::Info, "t", "m")
        .await;
    let elapsed = started.elapsed();
    assert_eq!(d[0].result, Ok(()));
    assert_eq!(rx.requests().len(), 2);
    // The policy's backoff is 10 ms here: only honouring `Retry-After: 1` waits this long.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < HANG_GUARD, "{elapsed:?}");
}

#[tokio::test]
async fn retry_after_is_capped_by_the_target_timeout() {
    let rx = Receiver::start(|n, _| {
        if n == 0 {
            Reply::RetryAfter(3600)
        } else {
            Reply::Status(200, "ok")
        }
    });
    let mut t = hook("limited", &rx);
    t.timeout_secs = 1;
    let started = Instant::now();
    let d = notifiers(&[t], &secrets(&[]))
        .notify(Level::Info, "t", "m")
        .await;
    let elapsed = started.elapsed();
    assert_eq!(d[0].result, Ok(()));
    assert_eq!(rx.requests().len(), 2);
    // It waited the capped second, not an hour.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < HANG_GUARD, "{elapsed:?}");
}

#[tokio::test]
async fn a_hanging_target_delays_nobody_beyond_its_timeout() {
    let hang = Receiver::start(|_, _| Reply::Hang);
    let fast = Receiver::ok();
    let mut slow = hook("hanging", &hang);
    slow.timeout_secs = 1;
    let targets = [
        slow,
        with_option(
            target("slack", "slack://T1/B2/C3"),
            "api_base",
            &fast.base(),
        ),
    ];
    let started = Instant::now();
    let d = notifiers(&targets, &secrets(&[]))
        .notify(Level::Critical, "db1 down", "m")
        .await;
    let elapsed = started.elapsed();
    assert!(elapsed < HANG_GUARD, "{elapsed:?}");
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].target, "hanging");
    assert_eq!(
        d[0].result,
        Err("E020: timed out after 1s (target timeout_secs)".to_string())
    );
    assert_eq!(d[1].target, "slack");
    assert_eq!(d[1].result, Ok(()));
    assert_eq!(fast.requests().len(), 1, "the fast target got its message");
    assert_eq!(
        hang.requests().len(),
        1,
        "a timed-out attempt is not repeated"
    );
}

#[tokio::test]
async fn an_unreachable_target_does_not_fail_the_caller() {
    // Bind then drop a listener: the port is closed, connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let ok = Receiver::ok();
    let targets = [
        target("closed", &format!("json://127.0.0.1:{port}/hook")),
        hook("ok", &ok),
    ];
    let d = notifiers(&targets, &secrets(&[]))
        .notify(Level::Error, "t", "m")
        .await;
    let reason = d[0].result.clone().expect_err("refused");
    assert!(reason.starts_with("E020: request failed: "), "{reason}");
    assert!(reason.ends_with("(after 3 attempts)"), "{reason}");
    assert_eq!(d[1].result, Ok(()));
}

#[tokio::test]
async fn test_all_reports_one_line_per_target() {
    let good = Receiver::ok();
    let bad = Receiver::start(|_, _| Reply::Status(403, "invalid_token"));
    let mut errors_only = with_option(
        target("slack-errors", "slack://T1/B2/C3"),
        "api_base",
        &good.base(),
    );
    // The test message is sent whatever the level filter.
    errors_only.min_level = Level::Critical;
    let mut off = hook("off", &good);
    off.enabled = false;
    let report = notifiers(&[errors_only, hook("webhook", &bad), off], &secrets(&[]))
        .test_all()
        .await;
    assert_eq!(
        report.lines(),
        vec![
            "✓ slack-errors (slack)".to_string(),
            "✗ webhook (webhook): E020: HTTP 403 Forbidden: invalid_token".to_string(),
            "- off (webhook): disabled, not tested".to_string(),
        ]
    );
    assert!(!report.all_delivered());
    assert_eq!(report.failed(), 1);
    assert_eq!(report.results[0].outcome, TestOutcome::Delivered);
    let sent = good.requests();
    assert_eq!(sent.len(), 1);
    let body = sent[0].json();
    assert_eq!(
        body["text"],
        ":information_source: *[INFO]* Test notification from kbz"
    );
    assert!(body["attachments"][0]["text"]
        .as_str()
        .unwrap_or("")
        .contains("`slack-errors` (slack) works"));
}

#[tokio::test]
async fn a_failing_telegram_chat_does_not_stop_the_others() {
    let rx = Receiver::start(|_, r| {
        if r.json()["chat_id"] == "-1" {
            Reply::Status(
                400,
                r#"{"ok":false,"description":"Bad Request: chat not found"}"#,
            )
        } else {
            Reply::Status(200, r#"{"ok":true}"#)
        }
    });
    let t = with_option(
        target("telegram", "tgram://1:abc/-1/42"),
        "api_base",
        &rx.base(),
    );
    let d = notifiers(&[t], &secrets(&[]))
        .notify(Level::Error, "t", "m")
        .await;
    assert_eq!(
        d[0].result,
        Err("E020: HTTP 400 Bad Request: Bad Request: chat not found (chat -1)".to_string())
    );
    let chats: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["chat_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(chats, ["-1", "42"]);
}
