//! JSON POSTs with retry classification: 2xx is delivered, 429 waits for `Retry-After`,
//! 408/5xx and connection failures back off, other 4xx are permanent. Error texts never
//! carry the URL (reqwest puts it in its errors) and pass through the target's redactor.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;

use crate::error::NotifyError;
use crate::message::one_line;
use crate::redact::Redactor;
use crate::retry::{self, Failure, GaveUp, Retry, RetryPolicy};

/// What one HTTP delivery needs besides the payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpCtx<'a> {
    pub client: &'a Client,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub redactor: &'a Redactor,
    pub target: &'a str,
}

/// The longest response-body excerpt kept in an error message.
const BODY_EXCERPT: usize = 300;

/// POSTs `body` as JSON to `url`, retrying per the policy.
pub(crate) async fn post_json(
    ctx: HttpCtx<'_>,
    url: &Url,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(), GaveUp> {
    retry::run(ctx.retry, ctx.timeout, ctx.target, || {
        attempt(ctx, url, headers, body)
    })
    .await
}

async fn attempt(
    ctx: HttpCtx<'_>,
    url: &Url,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(), Failure> {
    let response = ctx
        .client
        .post(url.clone())
        .headers(headers.clone())
        .json(body)
        .timeout(ctx.timeout)
        .send()
        .await
        .map_err(|e| transport_failure(ctx, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let header_wait = retry_after_header(response.headers());
    // The body explains most refusals (`invalid_token`, `chat not found`); a failure to read
    // it is not worth more than an empty excerpt.
    let text = response.text().await.unwrap_or_default();
    let retry = classify(status, header_wait.or_else(|| retry_after_body(&text)));
    let excerpt = excerpt(&ctx.redactor.redact(&error_text(&text)));
    let reason = status.canonical_reason().unwrap_or("");
    let detail = match (reason.is_empty(), excerpt.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" {reason}"),
        (true, false) => format!(": {excerpt}"),
        (false, false) => format!(" {reason}: {excerpt}"),
    };
    Err(Failure {
        error: NotifyError::Status {
            status: status.as_u16(),
            detail,
        },
        retry,
    })
}

/// Whether and when to retry after an error status.
fn classify(status: StatusCode, retry_after: Option<Duration>) -> Retry {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return retry_after.map(Retry::After).unwrap_or(Retry::Backoff);
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Retry::Backoff;
    }
    Retry::Never
}

/// Maps a reqwest error to a failure whose text has no URL and no secret.
fn transport_failure(ctx: HttpCtx<'_>, e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure {
            error: NotifyError::Timeout(ctx.timeout.as_secs()),
            retry: Retry::Never,
        };
    }
    let retry = if e.is_builder() {
        Retry::Never
    } else {
        Retry::Backoff
    };
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    Failure {
        error: NotifyError::Transport(ctx.redactor.redact(&text)),
        retry,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Discord (`retry_after`) and Telegram (`parameters.retry_after`) say it in the body too.
fn retry_after_body(text: &str) -> Option<Duration> {
    let v: Value = serde_json::from_str(text).ok()?;
    let secs = v
        .get("retry_after")
        .or_else(|| v.get("parameters").and_then(|p| p.get("retry_after")))?
        .as_f64()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The useful part of an error body: Telegram's `description`, Discord's `message`, a
/// generic `error`, or the whole text (Slack answers in plain text: `invalid_token`).
fn error_text(body: &str) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) {
        for key in ["description", "message", "error"] {
            if let Some(Value::String(s)) = map.get(key) {
                return s.clone();
            }
        }
    }
    body.to_string()
}

/// One line of at most [`BODY_EXCERPT`] characters.
fn excerpt(text: &str) -> String {
    let line = one_line(text);
    if line.chars().count() <= BODY_EXCERPT {
        line
    } else {
        let head: String = line.chars().take(BODY_EXCERPT).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_are_classified() {
        let s = |n| StatusCode::from_u16(n).expect("status");
        assert_eq!(classify(s(500), None), Retry::Backoff);
        assert_eq!(classify(s(503), None), Retry::Backoff);
        assert_eq!(classify(s(408), None), Retry::Backoff);
        assert_eq!(classify(s(404), None), Retry::Never);
        assert_eq!(classify(s(400), None), Retry::Never);
        assert_eq!(classify(s(429), None), Retry::Backoff);
        assert_eq!(
            classify(s(429), Some(Duration::from_secs(2))),
            Retry::After(Duration::from_secs(2))
        );
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after_header(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after_header(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(retry_after_header(&h), Some(Duration::from_millis(500)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_header(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_header(&h), None);
        assert_eq!(
            retry_after_body(r#"{"ok":false,"parameters":{"retry_after":7}}"#),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after_body(r#"{"retry_after":1.5}"#),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after_body("nope"), None);
    }

    #[test]
    fn error_bodies_are_reduced_to_their_message() {
        assert_eq!(
            error_text(
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
            ),
            "Bad Request: chat not found"
        );
        assert_eq!(
            error_text(r#"{"message":"Unknown Webhook","code":10015}"#),
            "Unknown Webhook"
        );
        assert_eq!(error_text("invalid_token"), "invalid_token");
        assert_eq!(error_text(r#"{"ok":false}"#), r#"{"ok":false}"#);
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt("a\n b"), "a b");
        let long = excerpt(&"x".repeat(1000));
        assert_eq!(long.chars().count(), BODY_EXCERPT + 1);
    }
}
