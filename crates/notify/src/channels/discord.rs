//! Discord webhooks: `discord://WebhookID/WebhookToken` (or the webhook's own
//! `https://discord.com/api/webhooks/...` URL) receives one embed coloured by level, with an
//! ISO 8601 timestamp and fields server / level. Mentions in user text are disabled.

use serde_json::{json, Value};

use super::{api_base, token_ok, Endpoint, Options};
use crate::error::NotifyError;
use crate::message::{footer, level_color, level_emoji, truncate_visible, Message};
use crate::redact::Redactor;
use crate::url_parse::Apprise;

/// The real service.
pub(crate) const DEFAULT_API: &str = "https://discord.com";
/// Discord's embed title limit.
pub(crate) const TITLE_LIMIT: usize = 256;
/// Discord's embed description limit.
pub(crate) const DESCRIPTION_LIMIT: usize = 4096;
/// Discord's embed field value limit.
pub(crate) const FIELD_LIMIT: usize = 1024;
/// Options this channel accepts.
pub(crate) const OPTIONS: &[&str] = &["api_base", "username"];

/// A configured Discord webhook.
#[derive(Debug, Clone)]
pub(crate) struct Discord {
    pub endpoint: Endpoint,
    pub username: Option<String>,
}

/// `discord://[botname@]WebhookID/WebhookToken`.
pub(crate) fn from_apprise(
    target: &str,
    a: &Apprise,
    opts: &mut Options,
    redactor: &mut Redactor,
) -> Result<Discord, NotifyError> {
    let bad = |reason: String| NotifyError::BadUrl {
        target: target.to_string(),
        reason,
    };
    let tokens = a.tokens().map_err(&bad)?;
    if tokens.len() != 2 {
        return Err(bad(format!(
            "discord:// needs `discord://WebhookID/WebhookToken` (the last two parts of \
             https://discord.com/api/webhooks/WebhookID/WebhookToken); found {} parts",
            tokens.len()
        )));
    }
    redactor.add(&tokens[1]);
    if !tokens[0].chars().all(|c| c.is_ascii_digit()) || tokens[0].is_empty() {
        return Err(bad("discord:// WebhookID must be digits".into()));
    }
    if !token_ok(&tokens[1], "-_") {
        return Err(bad(
            "discord:// WebhookToken has characters other than letters, digits, `-` and `_`".into(),
        ));
    }
    let base = api_base(target, opts.take("api_base"), DEFAULT_API)?;
    let url = format!("{base}/api/webhooks/{}/{}", tokens[0], tokens[1]);
    Ok(Discord {
        endpoint: Endpoint::new(target, &url)?,
        username: opts.take("username").or_else(|| a.user.clone()),
    })
}

/// `https://discord.com/api/webhooks/ID/TOKEN` given as is.
pub(crate) fn from_https(
    target: &str,
    url: &str,
    opts: &mut Options,
    redactor: &mut Redactor,
) -> Result<Discord, NotifyError> {
    let endpoint = Endpoint::new(target, url)?;
    if let Some(token) = endpoint.url.path_segments().and_then(|mut s| s.nth(3)) {
        redactor.add(token);
    }
    Ok(Discord {
        endpoint,
        username: opts.take("username"),
    })
}

/// The webhook payload.
pub(crate) fn payload(msg: &Message, username: Option<&str>) -> Value {
    let emoji = level_emoji(msg.level);
    let mut body = json!({
        "embeds": [{
            "title": truncate_visible(&format!("{emoji} {}", msg.title), TITLE_LIMIT),
            "description": truncate_visible(&msg.text, DESCRIPTION_LIMIT),
            "color": level_color(msg.level),
            "timestamp": msg.iso_time(),
            "fields": [
                {"name": "Server", "value": truncate_visible(&msg.server, FIELD_LIMIT), "inline": true},
                {"name": "Level", "value": msg.level.to_string(), "inline": true},
            ],
            "footer": {"text": footer()},
        }],
        "allowed_mentions": {"parse": []},
    });
    if let Some(name) = username {
        body["username"] = Value::String(name.to_string());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Level;

    #[test]
    fn limits_hold_and_total_stays_under_6000() {
        let msg = Message::new(Level::Error, &"t".repeat(400), &"d".repeat(9000), "srv");
        let p = payload(&msg, Some("kbz"));
        let e = &p["embeds"][0];
        let title = e["title"].as_str().expect("title");
        let desc = e["description"].as_str().expect("desc");
        assert_eq!(title.chars().count(), TITLE_LIMIT);
        assert_eq!(desc.chars().count(), DESCRIPTION_LIMIT);
        assert!(desc.contains("[truncated "), "{desc}");
        assert!(title.chars().count() + desc.chars().count() + 100 < 6000);
        assert_eq!(e["color"], 0xd00000);
        assert_eq!(p["username"], "kbz");
    }
}
