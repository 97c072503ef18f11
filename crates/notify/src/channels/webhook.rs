//! Generic JSON webhooks: `json://host[:port]/path` (HTTP), `jsons://...` (HTTPS) or a plain
//! `http(s)://` URL receive one JSON object per message; headers (for example an
//! `Authorization` token from the secrets file) come from `header.NAME` options.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::{Endpoint, Options};
use crate::error::NotifyError;
use crate::message::Message;
use crate::redact::Redactor;

/// The option prefix for extra HTTP headers.
pub(crate) const HEADER_PREFIX: &str = "header.";
/// Options this channel accepts.
pub(crate) const OPTIONS: &[&str] = &["header.NAME"];

/// A configured webhook.
#[derive(Clone)]
pub(crate) struct Webhook {
    pub endpoint: Endpoint,
    pub headers: HeaderMap,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `url` is already secret-resolved and has an `http` or `https` scheme.
pub(crate) fn from_url(
    target: &str,
    url: &str,
    opts: &mut Options,
    redactor: &mut Redactor,
) -> Result<Webhook, NotifyError> {
    let bad = |reason: String| NotifyError::BadUrl {
        target: target.to_string(),
        reason,
    };
    let endpoint = Endpoint::new(target, url)?;
    if let Some(pw) = endpoint.url.password() {
        redactor.add(pw);
    }
    if endpoint.url.host_str().unwrap_or("").is_empty() {
        return Err(bad("the webhook URL has no host".into()));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in opts.take_prefixed(HEADER_PREFIX) {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("option `header.{name}` is not a valid header name")))?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            bad(format!(
                "option `header.{name}` has a value that is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(Webhook { endpoint, headers })
}

/// The JSON body: stable field names for whoever consumes it.
pub(crate) fn payload(msg: &Message) -> Value {
    json!({
        "source": "kbz",
        "version": env!("CARGO_PKG_VERSION"),
        "level": level_name(msg),
        "title": msg.title,
        "message": msg.text,
        "server": msg.server,
        "timestamp": msg.iso_time(),
    })
}

fn level_name(msg: &Message) -> String {
    msg.level.to_string().to_lowercase()
}
