//! Slack incoming webhooks: `slack://TokenA/TokenB/TokenC` (or the webhook's own
//! `https://hooks.slack.com/services/...` URL) receives a headline with the level's emoji and
//! one attachment coloured by level: the message, fields server / level / date, a footer.

use serde_json::{json, Value};

use super::{api_base, token_ok, Endpoint, Options};
use crate::error::NotifyError;
use crate::message::{
    escape_html, footer, level_color, level_slack_emoji, truncate_visible, Message,
};
use crate::redact::Redactor;
use crate::url_parse::Apprise;

/// The real service.
pub(crate) const DEFAULT_API: &str = "https://hooks.slack.com";
/// Attachment text longer than this is cut with a visible marker (Slack advises 4,000).
pub(crate) const TEXT_LIMIT: usize = 4000;
/// Titles longer than this are cut with a visible marker.
pub(crate) const TITLE_LIMIT: usize = 256;
/// Options this channel accepts.
pub(crate) const OPTIONS: &[&str] = &["api_base", "username"];

/// A configured Slack webhook.
#[derive(Debug, Clone)]
pub(crate) struct Slack {
    pub endpoint: Endpoint,
    pub username: Option<String>,
    /// Channel overrides (`#ops`, `@alice`); empty posts to the webhook's own channel.
    pub channels: Vec<String>,
}

/// `slack://[botname@]TokenA/TokenB/TokenC[/#channel...]`.
pub(crate) fn from_apprise(
    target: &str,
    a: &Apprise,
    opts: &mut Options,
    redactor: &mut Redactor,
) -> Result<Slack, NotifyError> {
    let bad = |reason: String| NotifyError::BadUrl {
        target: target.to_string(),
        reason,
    };
    let mut tokens = a.tokens().map_err(&bad)?;
    if tokens.len() < 3 {
        return Err(bad(format!(
            "slack:// needs three tokens, `slack://TokenA/TokenB/TokenC` (the last three parts \
             of https://hooks.slack.com/services/TokenA/TokenB/TokenC); found {}",
            tokens.len()
        )));
    }
    let channels = tokens.split_off(3);
    for t in &tokens {
        redactor.add(t);
    }
    if let Some(i) = tokens.iter().position(|t| !token_ok(t, "")) {
        return Err(bad(format!(
            "slack:// token {} has characters other than letters and digits",
            i + 1
        )));
    }
    let channels = channels
        .into_iter()
        .map(|c| {
            let (prefix, name) = match c.chars().next() {
                Some(p @ ('#' | '@')) => (p, c[1..].to_string()),
                _ => ('#', c.clone()),
            };
            if token_ok(&name, "-_.") {
                Ok(format!("{prefix}{name}"))
            } else {
                Err(bad(format!(
                    "slack:// channel `{c}` is not a channel (`#ops`) or user (`@alice`) name"
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base = api_base(target, opts.take("api_base"), DEFAULT_API)?;
    let url = format!("{base}/services/{}/{}/{}", tokens[0], tokens[1], tokens[2]);
    Ok(Slack {
        endpoint: Endpoint::new(target, &url)?,
        username: opts.take("username").or_else(|| a.user.clone()),
        channels,
    })
}

/// `https://hooks.slack.com/services/...` given as is.
pub(crate) fn from_https(
    target: &str,
    url: &str,
    opts: &mut Options,
    redactor: &mut Redactor,
) -> Result<Slack, NotifyError> {
    let endpoint = Endpoint::new(target, url)?;
    for segment in endpoint.url.path_segments().into_iter().flatten().skip(1) {
        redactor.add(segment);
    }
    Ok(Slack {
        endpoint,
        username: opts.take("username"),
        channels: Vec::new(),
    })
}

/// The webhook payload, for the webhook's own channel or for `channel`.
pub(crate) fn payload(msg: &Message, username: Option<&str>, channel: Option<&str>) -> Value {
    let title = escape_html(&truncate_visible(&msg.title, TITLE_LIMIT));
    let text = escape_html(&truncate_visible(&msg.text, TEXT_LIMIT));
    let server = escape_html(&msg.server);
    let emoji = level_slack_emoji(msg.level);
    let mut body = json!({
        "text": format!("{emoji} *[{}]* {title}", msg.level),
        "attachments": [{
            "color": format!("#{:06x}", level_color(msg.level)),
            "fallback": format!("[{}] {title}", msg.level),
            "text": text,
            "fields": [
                {"title": "Server", "value": server, "short": true},
                {"title": "Level", "value": msg.level.to_string(), "short": true},
                {"title": "Date", "value": msg.iso_time(), "short": true},
            ],
            "footer": footer(),
            "ts": msg.timestamp.timestamp(),
        }],
    });
    if let Some(name) = username {
        body["username"] = Value::String(name.to_string());
    }
    if let Some(channel) = channel {
        body["channel"] = Value::String(channel.to_string());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::truncation_marker;
    use kbz_core::Level;

    #[test]
    fn long_text_is_visibly_truncated_and_escaped() {
        let msg = Message::new(Level::Warn, "a <b>", &"x".repeat(5000), "srv");
        let p = payload(&msg, None, None);
        let text = p["attachments"][0]["text"].as_str().expect("text");
        assert_eq!(text.chars().count(), TEXT_LIMIT);
        let kept = text.chars().take_while(|c| *c == 'x').count();
        assert!(text.ends_with(&truncation_marker(5000 - kept)), "{text}");
        assert_eq!(p["text"], ":warning: *[WARN]* a &lt;b&gt;");
        assert_eq!(p["attachments"][0]["color"], "#daa038");
        assert!(p.get("username").is_none());
    }
}
