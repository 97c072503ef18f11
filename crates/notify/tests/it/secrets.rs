//! No secret in logs, `Debug` output, delivery reasons or errors: a run with tokens and
//! passwords configured, failing in every way we can provoke, with all log output captured
//! at TRACE level (including `log` records of dependencies).

use std::io::Write;
use std::sync::{Arc, Mutex};

use kbz_core::{Level, Notifier};
use kbz_notify::{Notifiers, Target};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::receiver::{Receiver, Reply};
use crate::smtp::{SmtpServer, TestCert};
use crate::{fast_retry, secrets, target, with_option};

/// Log lines land here.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const SLACK_B: &str = "BSECRETSLACKB";
const SLACK_C: &str = "SlackSecretTokenC0123456";
const TG_TOKEN: &str = "987654321:AAHsecret_telegram-token";
const DISCORD_TOKEN: &str = "discord-secret_token-XYZ";
const HOOK_HEADER: &str = "header-secret-7f3a";
const HOOK_QUERY: &str = "query-secret-19b2";
const REFUSED_PATH: &str = "path-secret-55c1";
const SMTP_PASSWORD: &str = "smtp-secret-p4ss";

#[tokio::test]
async fn no_secret_in_logs_debug_or_errors() {
    let logs = Buffer::default();
    let _guard = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish()
        .set_default();

    // Endpoints that fail in different ways, some echoing the (token-bearing) path back.
    let slack = Receiver::start(|_, _| Reply::EchoPath(404));
    let telegram = Receiver::start(|_, _| Reply::EchoPath(500));
    let discord = Receiver::ok();
    let hanging = Receiver::start(|_, _| Reply::Hang);
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cert = TestCert::new();
    let smtp = SmtpServer::start("starttls", Some(("kbz", "the-right-password")), Some(&cert));

    let mut hang_target = with_option(
        target(
            "hook-hanging",
            &format!("json://{}/h?token={{secret:hook_query}}", hanging.addr),
        ),
        "header.Authorization",
        "Bearer {secret:hook_header}",
    );
    hang_target.timeout_secs = 1;
    let targets = vec![
        with_option(
            target("slack", "slack://T1/{secret:slack_b}/{secret:slack_c}"),
            "api_base",
            &slack.base(),
        ),
        with_option(
            target("telegram", "tgram://{secret:tg_token}/-100123"),
            "api_base",
            &telegram.base(),
        ),
        with_option(
            target("discord", "discord://42/{secret:discord_token}"),
            "api_base",
            &discord.base(),
        ),
        hang_target,
        target(
            "hook-refused",
            &format!("json://127.0.0.1:{refused_port}/{{secret:refused_path}}"),
        ),
        with_option(
            target(
                "mail",
                &format!(
                    "mailto://kbz:{{secret:smtp_password}}@127.0.0.1:{}?to=ops@example.org",
                    smtp.port
                ),
            ),
            "ca_file",
            cert.cert.to_str().expect("utf-8 path"),
        ),
    ];
    let s = secrets(&[
        ("slack_b", SLACK_B),
        ("slack_c", SLACK_C),
        ("tg_token", TG_TOKEN),
        ("discord_token", DISCORD_TOKEN),
        ("hook_header", HOOK_HEADER),
        ("hook_query", HOOK_QUERY),
        ("refused_path", REFUSED_PATH),
        ("smtp_password", SMTP_PASSWORD),
    ]);
    let notifiers = Notifiers::new(&targets, &s)
        .expect("targets build")
        .with_retry(fast_retry());

    let mut seen: Vec<String> = Vec::new();
    let deliveries = notifiers
        .notify(Level::Critical, "db1 down", "primary unreachable")
        .await;
    let report = notifiers.test_all().await;

    // Everything failed as intended except Discord, so each error path was exercised.
    let outcome: Vec<(&str, bool)> = deliveries
        .iter()
        .map(|d| (d.target.as_str(), d.result.is_ok()))
        .collect();
    assert_eq!(
        outcome,
        [
            ("slack", false),
            ("telegram", false),
            ("discord", true),
            ("hook-hanging", false),
            ("hook-refused", false),
            ("mail", false),
        ]
    );
    let mail_reason = deliveries[5].result.clone().expect_err("wrong password");
    assert!(mail_reason.contains("535"), "{mail_reason}");
    let slack_reason = deliveries[0].result.clone().expect_err("404");
    assert!(
        slack_reason.contains("no such hook: /services/****/****/****"),
        "the echoed path is masked: {slack_reason}"
    );

    for d in &deliveries {
        seen.push(format!("{d:?}"));
    }
    seen.extend(report.lines());
    seen.push(format!("{report:?}"));
    seen.push(format!("{notifiers:?}"));
    for t in notifiers.targets() {
        seen.push(format!("{t:?}"));
        seen.push(t.endpoint());
    }
    seen.push(format!("{:?}", s));

    // Configuration errors about secret-bearing parts do not echo them either.
    for (url, secret_name) in [
        ("slack://T1/{secret:slack_b}/{secret:bad}", "bad"),
        ("tgram://{secret:bad}/1", "bad"),
        ("discord://{secret:bad}/x", "bad"),
    ] {
        let s2 = secrets(&[("slack_b", SLACK_B), (secret_name, "bad!secret%value")]);
        let err = Target::from_config(&target("broken", url), &s2).expect_err("bad token");
        seen.push(err.to_string());
        seen.push(format!("{err:?}"));
        assert!(!err.to_string().contains("bad!secret"), "{err}");
    }

    let log_text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8 logs");
    assert!(
        log_text.contains("notification not delivered"),
        "the capture works: {log_text}"
    );
    assert!(log_text.contains("slack"), "{log_text}");
    seen.push(log_text);

    let all = seen.join("\n");
    if std::env::var_os("KBZ_SHOW").is_some() {
        eprintln!("{all}");
    }
    for secret in [
        SLACK_B,
        SLACK_C,
        TG_TOKEN,
        "AAHsecret_telegram-token",
        DISCORD_TOKEN,
        HOOK_HEADER,
        HOOK_QUERY,
        REFUSED_PATH,
        SMTP_PASSWORD,
        "the-right-password",
    ] {
        assert!(!all.contains(secret), "secret `{secret}` leaked in:\n{all}");
    }
    assert!(all.contains("****"), "masks are visible");
}

/// A failure notification quotes the failed command's stderr: every secret of the run (and
/// a fragment of one, as keepalived's truncated `auth_pass`) is masked in the body sent.
#[tokio::test]
async fn message_bodies_never_carry_a_run_secret() {
    const RUN_SECRET: &str = "Zq8RmT2vXk4LpW9sNc3YdH6fJb1GtA5e";
    let hook = Receiver::ok();
    let s = secrets(&[("redis_password", RUN_SECRET)]);
    let n = crate::notifiers(&[target("hook", &format!("json://{}/h", hook.addr))], &s);
    let body = format!(
        "redis-cli: AUTH failed for {RUN_SECRET}\nauth_pass {}",
        &RUN_SECRET[..8]
    );
    let out = n
        .notify(Level::Error, &format!("failed {RUN_SECRET}"), &body)
        .await;
    assert!(out.iter().all(|d| d.result.is_ok()), "{out:?}");
    let got = hook.requests();
    assert_eq!(got.len(), 1);
    let text = format!("{} {:?}", got[0].body, got[0].headers);
    assert!(text.contains("****"), "{text}");
    for w in RUN_SECRET.as_bytes().windows(8) {
        let w = std::str::from_utf8(w).expect("ascii");
        assert!(!text.contains(w), "fragment {w} sent: {text}");
    }
}
