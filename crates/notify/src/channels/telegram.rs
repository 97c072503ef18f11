//! Telegram Bot API `sendMessage`: `tgram://BotToken/ChatID[/ChatID...]`. HTML parse mode
//! with all user text escaped; a message over Telegram's 4,096-character limit is split
//! into numbered parts at line or word boundaries, never inside an HTML entity.

use serde_json::{json, Value};

use super::{api_base, token_ok, Endpoint, Options};
use crate::error::NotifyError;
use crate::message::{escape_html, level_emoji, truncate_visible, Message};
use crate::redact::Redactor;
use crate::url_parse::Apprise;

/// The real service.
pub(crate) const DEFAULT_API: &str = "https://api.telegram.org";
/// Telegram's limit for one message's text.
pub(crate) const LIMIT: usize = 4096;
/// Titles longer than this are cut with a visible marker (the rest goes in every part).
const TITLE_LIMIT: usize = 256;
/// Server names longer than this are cut with a visible marker.
const SERVER_LIMIT: usize = 128;
/// Options this channel accepts.
pub(crate) const OPTIONS: &[&str] = &["api_base", "chat_id"];

/// A configured bot and the chats it writes to.
#[derive(Debug, Clone)]
pub(crate) struct Telegram {
    /// `{api_base}/bot{token}/sendMessage`.
    pub endpoint: Endpoint,
    pub chat_ids: Vec<String>,
}

/// `tgram://BotToken/ChatID[/ChatID...]`, chats also from option `chat_id` (comma-separated).
pub(crate) fn from_apprise(
    target: &str,
    a: &Apprise,
    opts: &mut Options,
    redactor: &mut Redactor,
) -> Result<Telegram, NotifyError> {
    let bad = |reason: String| NotifyError::BadUrl {
        target: target.to_string(),
        reason,
    };
    let tokens = a.tokens().map_err(&bad)?;
    let Some((token, chats)) = tokens.split_first() else {
        return Err(bad(
            "tgram:// needs `tgram://BotToken/ChatID`; the bot token is missing".into(),
        ));
    };
    redactor.add(token);
    let well_formed = token.split_once(':').is_some_and(|(id, key)| {
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) && token_ok(key, "-_")
    });
    if !well_formed {
        return Err(bad(
            "tgram:// bot token must look like `123456789:AAE...` (digits, `:`, then letters, \
             digits, `-` or `_`), as given by @BotFather"
                .into(),
        ));
    }
    let mut chat_ids: Vec<String> = chats.to_vec();
    if let Some(more) = opts.take("chat_id") {
        chat_ids.extend(
            more.split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty()),
        );
    }
    if chat_ids.is_empty() {
        return Err(bad(
            "tgram:// needs at least one chat: `tgram://BotToken/ChatID` or option `chat_id`"
                .into(),
        ));
    }
    for chat in &chat_ids {
        let numeric = chat.strip_prefix('-').unwrap_or(chat);
        let ok = (!numeric.is_empty() && numeric.chars().all(|c| c.is_ascii_digit()))
            || chat.strip_prefix('@').is_some_and(|n| token_ok(n, "_"));
        if !ok {
            return Err(bad(format!(
                "tgram:// chat `{chat}` is neither a numeric chat ID (`-100123...`) nor a \
                 `@channelname`"
            )));
        }
    }
    let base = api_base(target, opts.take("api_base"), DEFAULT_API)?;
    let endpoint = Endpoint::new(target, &format!("{base}/bot{token}/sendMessage"))?;
    Ok(Telegram { endpoint, chat_ids })
}

/// The `sendMessage` body for one chat and one part.
pub(crate) fn payload(chat_id: &str, text: &str) -> Value {
    json!({
        "chat_id": chat_id,
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
    })
}

/// Telegram counts UTF-16 code units; counting them is never less than its own count.
fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The message as one or more HTML texts, each within [`LIMIT`].
pub(crate) fn parts(msg: &Message) -> Vec<String> {
    let title = escape_html(&truncate_visible(&msg.title, TITLE_LIMIT));
    let server = escape_html(&truncate_visible(&msg.server, SERVER_LIMIT));
    let emoji = level_emoji(msg.level);
    let head = |part: Option<(usize, usize)>| {
        let suffix = part.map(|(i, n)| format!(" ({i}/{n})")).unwrap_or_default();
        format!(
            "<b>{emoji} [{}] {title}</b>{suffix}\n<i>{server}</i> · {}\n\n",
            msg.level,
            msg.iso_time()
        )
    };
    let body = escape_html(&msg.text);
    let single = format!("{}{body}", head(None));
    if units(&single) <= LIMIT {
        return vec![single];
    }
    let budget = LIMIT - units(&head(Some((9999, 9999))));
    let chunks = split_escaped(&body, budget);
    let n = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}{c}", head(Some((i + 1, n)))))
        .collect()
}

/// Splits HTML-escaped text into chunks of at most `budget` UTF-16 units, preferring a line
/// break, then a space, in the second half of each chunk; never inside `&amp;`-style entities.
fn split_escaped(text: &str, budget: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while units(rest) > budget {
        let mut used = 0;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            if used + c.len_utf16() > budget {
                break;
            }
            used += c.len_utf16();
            end = i + c.len_utf8();
        }
        if let Some(amp) = rest[..end].rfind('&') {
            if !rest[amp..end].contains(';') {
                end = amp;
            }
        }
        let window = &rest[..end];
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .map(|i| i + 1)
            .filter(|&i| i >= end / 2)
            .unwrap_or(end);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Level;

    #[test]
    fn short_messages_are_one_part() {
        let msg = Message::new(Level::Info, "t <1>", "a & b", "srv");
        let p = parts(&msg);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("<b>ℹ️ [INFO] t &lt;1&gt;</b>\n<i>srv</i> · "),
            "{}",
            p[0]
        );
        assert!(p[0].ends_with("\n\na &amp; b"), "{}", p[0]);
    }

    #[test]
    fn long_messages_are_split_within_the_limit_losing_nothing() {
        let line = "line <with> & entities, and some words to break on\n";
        let text = line.repeat(300);
        let msg = Message::new(Level::Error, "big", &text, "srv");
        let p = parts(&msg);
        assert!(p.len() >= 4, "{}", p.len());
        let mut joined = String::new();
        for (i, part) in p.iter().enumerate() {
            assert!(units(part) <= LIMIT, "part {i} is {}", units(part));
            let head_end = part.find("\n\n").expect("head") + 2;
            assert!(part[..head_end].contains(&format!("({}/{})", i + 1, p.len())));
            joined.push_str(&part[head_end..]);
        }
        assert_eq!(joined, escape_html(&text));
    }

    #[test]
    fn entities_are_never_cut() {
        let text = "&".repeat(5000);
        let msg = Message::new(Level::Info, "amps", &text, "srv");
        for part in parts(&msg) {
            let body = &part[part.find("\n\n").expect("head") + 2..];
            assert_eq!(body.len() % 5, 0, "a cut inside &amp;");
            assert!(body.chars().count() > 0);
        }
    }

    #[test]
    fn utf16_heavy_text_is_counted_conservatively() {
        let text = "😀".repeat(3000);
        let msg = Message::new(Level::Info, "emoji", &text, "srv");
        let p = parts(&msg);
        assert!(p.len() >= 2);
        assert!(p.iter().all(|part| units(part) <= LIMIT));
    }
}
