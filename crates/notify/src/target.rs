//! `Target`: one `[[notify]]` entry of kbz.toml made usable: secrets resolved, URL parsed
//! into a channel, level filter and timeout checked. Its `Debug` shows no secret.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use kbz_core::config::NotifyTarget;
use kbz_core::{Level, Secrets};

use crate::channels::{discord, email, slack, telegram, webhook, Options};
use crate::error::NotifyError;
use crate::redact::Redactor;
use crate::url_parse::{resolve_placeholders, Apprise};

/// The kind of service a target talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Slack incoming webhook.
    Slack,
    /// Discord webhook.
    Discord,
    /// Telegram bot.
    Telegram,
    /// Email over SMTP.
    Email,
    /// Generic JSON webhook.
    Webhook,
}

impl ChannelKind {
    /// The lower-case name (`slack`, `discord`, `telegram`, `email`, `webhook`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Discord => "discord",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed channel.
#[derive(Debug, Clone)]
pub(crate) enum Channel {
    Slack(slack::Slack),
    Discord(discord::Discord),
    Telegram(telegram::Telegram),
    Email(email::Email),
    Webhook(webhook::Webhook),
}

impl Channel {
    fn kind(&self) -> ChannelKind {
        match self {
            Channel::Slack(_) => ChannelKind::Slack,
            Channel::Discord(_) => ChannelKind::Discord,
            Channel::Telegram(_) => ChannelKind::Telegram,
            Channel::Email(_) => ChannelKind::Email,
            Channel::Webhook(_) => ChannelKind::Webhook,
        }
    }
}

/// One usable notification target.
#[derive(Clone)]
pub struct Target {
    pub(crate) name: String,
    pub(crate) channel: Channel,
    pub(crate) min_level: Level,
    pub(crate) enabled: bool,
    pub(crate) timeout: Duration,
    pub(crate) redactor: Redactor,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("channel", &self.channel)
            .field("min_level", &self.min_level)
            .field("enabled", &self.enabled)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Target {
    /// Builds a target from its kbz.toml entry, replacing `{secret:NAME}` placeholders in
    /// the URL and in option values from `secrets`.
    ///
    /// Errors: a missing secret is E052 ([`NotifyError::MissingSecret`]); a malformed URL,
    /// an unknown option or a zero timeout is E008. No error message contains a secret.
    pub fn from_config(cfg: &NotifyTarget, secrets: &Secrets) -> Result<Target, NotifyError> {
        let name = cfg.name.as_str();
        let bad = |reason: String| NotifyError::BadUrl {
            target: name.to_string(),
            reason,
        };
        if name.trim().is_empty() {
            return Err(bad("the target has an empty `name`".into()));
        }
        if cfg.timeout_secs == 0 {
            return Err(bad("`timeout_secs` must be at least 1".into()));
        }
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let mut redactor = Redactor::default();
        let url = resolve_placeholders(name, &cfg.url, secrets, &mut redactor, true)?;
        let mut option_values = BTreeMap::new();
        for (k, v) in &cfg.options {
            let v = resolve_placeholders(name, v, secrets, &mut redactor, false)?;
            option_values.insert(k.clone(), v);
        }
        let a = Apprise::split(&url).map_err(&bad)?;
        let with_query = |mut extra: BTreeMap<String, String>| {
            // URL query pairs first; kbz.toml `options` override them.
            for (k, v) in &a.query {
                extra.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Options::new(name, extra)
        };
        let (channel, opts, valid): (Channel, Options, &[&str]) = match a.scheme.as_str() {
            "slack" => {
                let mut opts = with_query(option_values);
                let c = slack::from_apprise(name, &a, &mut opts, &mut redactor)?;
                (Channel::Slack(c), opts, slack::OPTIONS)
            }
            "discord" => {
                let mut opts = with_query(option_values);
                let c = discord::from_apprise(name, &a, &mut opts, &mut redactor)?;
                (Channel::Discord(c), opts, discord::OPTIONS)
            }
            "tgram" => {
                let mut opts = with_query(option_values);
                let c = telegram::from_apprise(name, &a, &mut opts, &mut redactor)?;
                (Channel::Telegram(c), opts, telegram::OPTIONS)
            }
            "mailto" | "mailtos" => {
                let mut opts = with_query(option_values);
                let c = email::from_apprise(name, &a, &mut opts, &mut redactor, timeout)?;
                (Channel::Email(c), opts, email::OPTIONS)
            }
            "json" | "jsons" | "http" | "https" => {
                // The query belongs to the webhook URL here, not to the options.
                let mut opts = Options::new(name, option_values);
                let rest = &url.trim()[a.scheme.len() + 3..];
                let scheme = match a.scheme.as_str() {
                    "json" | "http" => "http",
                    _ => "https",
                };
                let http_url = format!("{scheme}://{rest}");
                let parsed = reqwest::Url::parse(&http_url)
                    .map_err(|e| bad(format!("the webhook URL is not valid ({e})")))?;
                let host = parsed.host_str().unwrap_or("");
                let path = parsed.path();
                if scheme == "https" && host == "hooks.slack.com" && path.starts_with("/services/")
                {
                    let c = slack::from_https(name, &http_url, &mut opts, &mut redactor)?;
                    (Channel::Slack(c), opts, &["username"][..])
                } else if scheme == "https"
                    && matches!(host, "discord.com" | "discordapp.com")
                    && path.starts_with("/api/webhooks/")
                {
                    let c = discord::from_https(name, &http_url, &mut opts, &mut redactor)?;
                    (Channel::Discord(c), opts, &["username"][..])
                } else {
                    let c = webhook::from_url(name, &http_url, &mut opts, &mut redactor)?;
                    (Channel::Webhook(c), opts, webhook::OPTIONS)
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown scheme `{other}://`; expected slack://, discord://, tgram://, \
                     mailto://, mailtos://, json://, jsons:// or https://"
                )))
            }
        };
        let kind = channel.kind().as_str();
        opts.finish(kind, valid)?;
        Ok(Target {
            name: name.to_string(),
            channel,
            min_level: cfg.min_level,
            enabled: cfg.enabled,
            timeout,
            redactor,
        })
    }

    /// The target's name from kbz.toml.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of service.
    pub fn kind(&self) -> ChannelKind {
        self.channel.kind()
    }

    /// The lowest level sent to this target.
    pub fn min_level(&self) -> Level {
        self.min_level
    }

    /// Whether the target is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a message of `level` goes to this target: enabled and `level >= min_level`.
    pub fn accepts(&self, level: Level) -> bool {
        self.enabled && level >= self.min_level
    }

    /// `text` with this target's secrets masked as `****`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Where messages go, with every secret part masked (for display).
    pub fn endpoint(&self) -> String {
        match &self.channel {
            Channel::Slack(c) => c.endpoint.shown.clone(),
            Channel::Discord(c) => c.endpoint.shown.clone(),
            Channel::Telegram(c) => c.endpoint.shown.clone(),
            Channel::Webhook(c) => c.endpoint.shown.clone(),
            Channel::Email(c) => format!("{c:?}"),
        }
    }
}

/// Builds every target, refusing duplicate names.
pub(crate) fn build_all(
    targets: &[NotifyTarget],
    secrets: &Secrets,
) -> Result<Vec<Target>, NotifyError> {
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    let run_secrets = Redactor::from_secrets(secrets);
    for cfg in targets {
        if out.iter().any(|t| t.name == cfg.name) {
            return Err(NotifyError::DuplicateName(cfg.name.clone()));
        }
        let mut t = Target::from_config(cfg, secrets)?;
        // A message body can quote any of the run's secrets (a failed command's stderr).
        t.redactor.merge(&run_secrets);
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Secret;

    fn cfg(url: &str) -> NotifyTarget {
        NotifyTarget {
            name: "t".into(),
            url: url.into(),
            min_level: Level::Warn,
            enabled: true,
            timeout_secs: 5,
            options: BTreeMap::new(),
        }
    }

    fn secrets() -> Secrets {
        let mut s = Secrets::in_memory();
        s.set("slack_b", Secret::new("BBBBBBBB"));
        s.set("slack_c", Secret::new("CCCCCCCCCCCCCCCCCCCCCCCC"));
        s.set("tg", Secret::new("123456:AAEsecretsecret-_x"));
        s.set("dc", Secret::new("tokentokentoken-_"));
        s.set("smtp", Secret::new("p@ss:w/rd"));
        s.set("hook", Secret::new("hooktoken"));
        s
    }

    fn parse(url: &str) -> Result<Target, NotifyError> {
        Target::from_config(&cfg(url), &secrets())
    }

    fn url_of(t: &Target) -> String {
        match &t.channel {
            Channel::Slack(c) => c.endpoint.url.to_string(),
            Channel::Discord(c) => c.endpoint.url.to_string(),
            Channel::Telegram(c) => c.endpoint.url.to_string(),
            Channel::Webhook(c) => c.endpoint.url.to_string(),
            Channel::Email(_) => String::new(),
        }
    }

    #[test]
    fn slack_url() {
        let t = parse("slack://T000/{secret:slack_b}/{secret:slack_c}").expect("parse");
        assert_eq!(t.kind(), ChannelKind::Slack);
        assert_eq!(
            url_of(&t),
            "https://hooks.slack.com/services/T000/BBBBBBBB/CCCCCCCCCCCCCCCCCCCCCCCC"
        );
        assert_eq!(t.endpoint(), "https://hooks.slack.com/****");
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("BBBBBBBB") && !dbg.contains("CCCC"), "{dbg}");
        let t = parse("https://hooks.slack.com/services/T1/B2/C3").expect("parse");
        assert_eq!(t.kind(), ChannelKind::Slack);
        assert_eq!(t.redact("x/B2/C3"), "x/****/****");
    }

    #[test]
    fn slack_whole_webhook_in_one_secret_with_channels() {
        let mut s = secrets();
        s.set("slack_webhook", Secret::new("T0/B1/C2"));
        let t = Target::from_config(&cfg("slack://{secret:slack_webhook}/#ops/@alice/dev"), &s)
            .expect("parse");
        assert_eq!(url_of(&t), "https://hooks.slack.com/services/T0/B1/C2");
        match &t.channel {
            Channel::Slack(c) => assert_eq!(c.channels, vec!["#ops", "@alice", "#dev"]),
            _ => unreachable!(),
        }
        let e = Target::from_config(&cfg("slack://{secret:slack_webhook}/#o!ps"), &s).unwrap_err();
        assert!(e.to_string().contains("channel `#o!ps`"), "{e}");
    }

    #[test]
    fn slack_bad() {
        let e = parse("slack://T000/BBB").unwrap_err();
        assert!(e.to_string().contains("three tokens"), "{e}");
        assert!(e.to_string().contains("found 2"), "{e}");
        let e = parse("slack://T000/B!B/C").unwrap_err();
        assert!(e.to_string().contains("token 2"), "{e}");
        assert!(!e.to_string().contains("B!B"), "{e}");
    }

    #[test]
    fn discord_url() {
        let t = parse("discord://1234/{secret:dc}").expect("parse");
        assert_eq!(t.kind(), ChannelKind::Discord);
        assert_eq!(
            url_of(&t),
            "https://discord.com/api/webhooks/1234/tokentokentoken-_"
        );
        let e = parse("discord://abc/tok").unwrap_err();
        assert!(e.to_string().contains("digits"), "{e}");
        let e = parse("discord://1234").unwrap_err();
        assert!(e.to_string().contains("WebhookID/WebhookToken"), "{e}");
        let t = parse("https://discord.com/api/webhooks/1/tok").expect("parse");
        assert_eq!(t.kind(), ChannelKind::Discord);
        assert_eq!(t.redact("/1/tok"), "/1/****");
    }

    #[test]
    fn telegram_url() {
        let t = parse("tgram://{secret:tg}/-1001/@ops_channel").expect("parse");
        assert_eq!(t.kind(), ChannelKind::Telegram);
        assert_eq!(
            url_of(&t),
            "https://api.telegram.org/bot123456:AAEsecretsecret-_x/sendMessage"
        );
        match &t.channel {
            Channel::Telegram(c) => assert_eq!(c.chat_ids, vec!["-1001", "@ops_channel"]),
            _ => unreachable!(),
        }
        let e = parse("tgram://{secret:tg}").unwrap_err();
        assert!(e.to_string().contains("at least one chat"), "{e}");
        let e = parse("tgram://notatoken/1").unwrap_err();
        assert!(e.to_string().contains("@BotFather"), "{e}");
        assert!(!e.to_string().contains("notatoken"), "{e}");
        let e = parse("tgram://{secret:tg}/chat!").unwrap_err();
        assert!(e.to_string().contains("chat `chat!`"), "{e}");
    }

    #[test]
    fn telegram_chat_from_options_and_api_base() {
        let mut c = cfg("tgram://{secret:tg}");
        c.options.insert("chat_id".into(), "42, -7".into());
        c.options
            .insert("api_base".into(), "http://127.0.0.1:9/".into());
        let t = Target::from_config(&c, &secrets()).expect("parse");
        assert_eq!(
            url_of(&t),
            "http://127.0.0.1:9/bot123456:AAEsecretsecret-_x/sendMessage"
        );
        match &t.channel {
            Channel::Telegram(c) => assert_eq!(c.chat_ids, vec!["42", "-7"]),
            _ => unreachable!(),
        }
        c.options.insert("api_base".into(), "ftp://x".into());
        let e = Target::from_config(&c, &secrets()).unwrap_err();
        assert!(e.to_string().contains("http:// or https://"), "{e}");
    }

    #[test]
    fn email_url_with_secret_password() {
        let t = parse("mailtos://ops%40x.org:{secret:smtp}@smtp.x.org?to=a@b.c").expect("parse");
        assert_eq!(t.kind(), ChannelKind::Email);
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("p@ss") && !dbg.contains("w/rd"), "{dbg}");
        assert_eq!(t.redact("pw=p@ss:w/rd"), "pw=****");
    }

    #[test]
    fn webhook_urls() {
        let t = parse("json://127.0.0.1:8080/hooks/kbz?token={secret:hook}").expect("parse");
        assert_eq!(t.kind(), ChannelKind::Webhook);
        assert_eq!(
            url_of(&t),
            "http://127.0.0.1:8080/hooks/kbz?token=hooktoken"
        );
        assert_eq!(t.endpoint(), "http://127.0.0.1:8080/****");
        let t = parse("jsons://hooks.example.com/x").expect("parse");
        assert_eq!(url_of(&t), "https://hooks.example.com/x");
        let t = parse("https://hooks.example.com/y").expect("parse");
        assert_eq!(url_of(&t), "https://hooks.example.com/y");
        let e = parse("json://").unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
    }

    #[test]
    fn webhook_header_options() {
        let mut c = cfg("https://hooks.example.com/y");
        c.options
            .insert("header.Authorization".into(), "Bearer {secret:hook}".into());
        let t = Target::from_config(&c, &secrets()).expect("parse");
        assert!(!format!("{t:?}").contains("hooktoken"));
        assert_eq!(t.redact("Bearer hooktoken"), "Bearer ****");
        c.options.insert("header.Bad Name".into(), "x".into());
        let e = Target::from_config(&c, &secrets()).unwrap_err();
        assert!(e.to_string().contains("header.Bad Name"), "{e}");
    }

    #[test]
    fn config_errors_have_codes() {
        use kbz_errors::{Code, HasCode};
        let e = parse("ftp://x").unwrap_err();
        assert_eq!(e.code(), Code::E008);
        assert!(e.to_string().contains("unknown scheme `ftp://`"), "{e}");
        let e = parse("no scheme here").unwrap_err();
        assert_eq!(e.code(), Code::E008);
        let e = parse("slack://{secret:missing}/b/c").unwrap_err();
        assert_eq!(e.code(), Code::E052);
        let d = e.to_diagnostic();
        assert!(d.hint.unwrap_or_default().contains("missing = "), "hint");
        let mut c = cfg("slack://a/b/c");
        c.options.insert("colour".into(), "red".into());
        let e = Target::from_config(&c, &secrets()).unwrap_err();
        assert_eq!(e.code(), Code::E008);
        assert_eq!(
            e.to_string(),
            "notify target `t`: unknown option `colour` for slack (valid: api_base, username)"
        );
        let mut c = cfg("slack://a/b/c");
        c.timeout_secs = 0;
        let e = Target::from_config(&c, &secrets()).unwrap_err();
        assert!(e.to_string().contains("timeout_secs"), "{e}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = build_all(&[cfg("slack://a/b/c"), cfg("slack://a/b/c")], &secrets()).unwrap_err();
        assert_eq!(e, NotifyError::DuplicateName("t".into()));
    }

    #[test]
    fn level_filter() {
        let mut c = cfg("slack://a/b/c");
        c.min_level = Level::Warn;
        let t = Target::from_config(&c, &secrets()).expect("parse");
        assert!(!t.accepts(Level::Debug));
        assert!(!t.accepts(Level::Info));
        assert!(t.accepts(Level::Warn));
        assert!(t.accepts(Level::Error));
        assert!(t.accepts(Level::Critical));
        c.enabled = false;
        let t = Target::from_config(&c, &secrets()).expect("parse");
        assert!(!t.accepts(Level::Critical));
        c.enabled = true;
        c.min_level = Level::Debug;
        let t = Target::from_config(&c, &secrets()).expect("parse");
        assert!(t.accepts(Level::Debug));
    }
}
