//! `Message`: one notification as every channel renders it, plus the text helpers the
//! channels share (visible truncation, HTML and Slack escaping, level colours and emoji).

use chrono::{DateTime, SecondsFormat, Utc};
use kbz_core::Level;

/// One notification, ready to be rendered by a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Severity.
    pub level: Level,
    /// Short title (one line).
    pub title: String,
    /// Body text (may span lines).
    pub text: String,
    /// The server or cluster the message is about.
    pub server: String,
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
}

impl Message {
    /// A message stamped now.
    pub fn new(level: Level, title: &str, text: &str, server: &str) -> Self {
        Message {
            level,
            // A title is one line: newlines would break email subjects and chat headings.
            title: one_line(title),
            text: text.to_string(),
            server: server.to_string(),
            timestamp: Utc::now(),
        }
    }

    /// The timestamp in RFC 3339 / ISO 8601 form, `2026-11-26T15:04:05Z`.
    pub fn iso_time(&self) -> String {
        self.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// `text` with line breaks and runs of whitespace collapsed to single spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The marker appended where text was cut: `… [truncated N chars]`.
pub fn truncation_marker(removed: usize) -> String {
    format!("… [truncated {removed} chars]")
}

/// `text` cut to at most `max` characters, ending in a visible
/// [`truncation_marker`] that says how many characters were removed. Text that fits is
/// returned unchanged.
pub fn truncate_visible(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    // The marker's own length depends on the number it carries: start from the shortest
    // marker and shrink the kept prefix until prefix and marker fit.
    let mut keep = max.saturating_sub(truncation_marker(1).chars().count());
    loop {
        let marker = truncation_marker(total - keep);
        if keep + marker.chars().count() <= max || keep == 0 {
            let head: String = text.chars().take(keep).collect();
            return format!("{head}{marker}");
        }
        keep -= 1;
    }
}

/// Escapes `&`, `<` and `>` (HTML text for Telegram; Slack's control characters).
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour of a level as `0xRRGGBB`.
pub(crate) fn level_color(level: Level) -> u32 {
    match level {
        Level::Debug => 0x9e9e9e,
        Level::Info => 0x2eb886,
        Level::Warn => 0xdaa038,
        Level::Error => 0xd00000,
        Level::Critical => 0x7b0000,
    }
}

/// A Unicode emoji for a level (Discord, Telegram).
pub(crate) fn level_emoji(level: Level) -> &'static str {
    match level {
        Level::Debug => "🔍",
        Level::Info => "ℹ️",
        Level::Warn => "⚠️",
        Level::Error => "❌",
        Level::Critical => "🚨",
    }
}

/// A Slack emoji shortcode for a level.
pub(crate) fn level_slack_emoji(level: Level) -> &'static str {
    match level {
        Level::Debug => ":mag:",
        Level::Info => ":information_source:",
        Level::Warn => ":warning:",
        Level::Error => ":x:",
        Level::Critical => ":rotating_light:",
    }
}

/// `kbz 0.1.0`, the footer of chat messages.
pub(crate) fn footer() -> String {
    format!("kbz {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(truncate_visible("hello", 5), "hello");
        assert_eq!(truncate_visible("", 0), "");
    }

    #[test]
    fn long_text_is_cut_with_a_marker_counting_removed_chars() {
        let text = "é".repeat(100);
        let cut = truncate_visible(&text, 40);
        assert_eq!(cut.chars().count(), 40, "{cut}");
        let kept = cut.chars().take_while(|c| *c == 'é').count();
        assert!(cut.ends_with(&truncation_marker(100 - kept)), "{cut}");
    }

    #[test]
    fn marker_width_change_is_accounted_for() {
        // 10_000 chars into 30: the count has five digits.
        let cut = truncate_visible(&"a".repeat(10_000), 30);
        assert!(cut.chars().count() <= 30);
        assert!(cut.ends_with(" chars]"), "{cut}");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("a<b>&c"), "a&lt;b&gt;&amp;c");
    }

    #[test]
    fn titles_are_one_line() {
        let m = Message::new(Level::Info, "a\nb\r\n  c", "x\ny", "s");
        assert_eq!(m.title, "a b c");
        assert_eq!(m.text, "x\ny");
    }
}
