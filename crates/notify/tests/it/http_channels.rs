//! The exact payload each HTTP channel sends (insta snapshots), Telegram splitting, visible
//! truncation and the level filter, all against the loopback receiver.

use kbz_core::{Level, Notifier};
use kbz_notify::truncation_marker;
use serde_json::json;

use crate::receiver::{Receiver, Recorded};
use crate::{filters, notifiers, secrets, target, with_option};

const TITLE: &str = "kbz install failed on prod: E020";
const TEXT: &str = "E020 [db1]: download of k3s failed: HTTP 404\n<script>alert(1)</script> & more";

/// The stable parts of a request, for snapshots.
fn shape(r: &Recorded) -> serde_json::Value {
    json!({
        "method": r.method,
        "path": r.path,
        "content_type": r.headers.get("content-type"),
        "user_agent": r.headers.get("user-agent"),
        "body": r.json(),
    })
}

async fn one_request(t: kbz_core::config::NotifyTarget, rx: &Receiver) -> Recorded {
    let s = secrets(&[
        ("slack_c", "CCCCCCCCCCCCCCCCCCCCCCCC"),
        ("discord_token", "DiscordTokenABC_-123"),
        ("tg_token", "123456789:AAEtesttokentesttoken_-x"),
        ("hook_token", "hook-token-xyz"),
    ]);
    let n = notifiers(&[t], &s);
    let d = n.notify(Level::Error, TITLE, TEXT).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].result, Ok(()), "{d:?}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    reqs.into_iter().next().expect("one request")
}

#[tokio::test]
async fn slack_payload() {
    let rx = Receiver::ok();
    let t = with_option(
        target("slack", "slack://T0001/B0002/{secret:slack_c}"),
        "api_base",
        &rx.base(),
    );
    let r = one_request(t, &rx).await;
    assert_eq!(r.path, "/services/T0001/B0002/CCCCCCCCCCCCCCCCCCCCCCCC");
    insta::with_settings!({ filters => filters() }, {
        insta::assert_json_snapshot!("slack__payload", shape(&r));
    });
}

#[tokio::test]
async fn discord_payload() {
    let rx = Receiver::ok();
    let t = with_option(
        target("discord", "discord://kbz-bot@112233/{secret:discord_token}"),
        "api_base",
        &rx.base(),
    );
    let r = one_request(t, &rx).await;
    assert_eq!(r.path, "/api/webhooks/112233/DiscordTokenABC_-123");
    insta::with_settings!({ filters => filters() }, {
        insta::assert_json_snapshot!("discord__payload", shape(&r));
    });
}

#[tokio::test]
async fn telegram_payload() {
    let rx = Receiver::ok();
    let t = with_option(
        target("telegram", "tgram://{secret:tg_token}/-1001234567890"),
        "api_base",
        &rx.base(),
    );
    let r = one_request(t, &rx).await;
    assert_eq!(r.path, "/bot123456789:AAEtesttokentesttoken_-x/sendMessage");
    insta::with_settings!({ filters => filters() }, {
        insta::assert_json_snapshot!("telegram__payload", shape(&r));
    });
}

#[tokio::test]
async fn webhook_payload() {
    let rx = Receiver::ok();
    let url = format!("json://{}/hooks/kbz?source=ci", rx.addr);
    let t = with_option(
        target("hook", &url),
        "header.Authorization",
        "Bearer {secret:hook_token}",
    );
    let r = one_request(t, &rx).await;
    assert_eq!(
        r.headers.get("authorization").map(String::as_str),
        Some("Bearer hook-token-xyz")
    );
    insta::with_settings!({ filters => filters() }, {
        insta::assert_json_snapshot!("webhook__payload", shape(&r));
    });
}

#[tokio::test]
async fn telegram_splits_long_messages_into_numbered_parts() {
    let rx = Receiver::ok();
    let t = with_option(
        target("telegram", "tgram://{secret:tg_token}/42/@ops_room"),
        "api_base",
        &rx.base(),
    );
    let s = secrets(&[("tg_token", "1:abc")]);
    let line = "replica db2 lagging <1 MiB> & catching up\n";
    let text = line.repeat(250); // ~10,750 characters, ~12,000 once escaped
    let d = notifiers(&[t], &s).notify(Level::Warn, "lag", &text).await;
    assert_eq!(d[0].result, Ok(()));
    let reqs = rx.requests();
    // Every part goes to each of the two chats, in order.
    assert_eq!(reqs.len() % 2, 0);
    let per_chat = reqs.len() / 2;
    assert!(per_chat >= 3, "{per_chat} parts");
    let mut joined = String::new();
    for (i, r) in reqs[..per_chat].iter().enumerate() {
        let body = r.json();
        assert_eq!(body["chat_id"], "42");
        assert_eq!(body["parse_mode"], "HTML");
        let part = body["text"].as_str().expect("text");
        assert!(part.encode_utf16().count() <= 4096, "part {i} too long");
        assert!(
            part.starts_with(&format!("<b>⚠️ [WARN] lag</b> ({}/{per_chat})\n", i + 1)),
            "{part}"
        );
        joined.push_str(&part[part.find("\n\n").expect("header") + 2..]);
    }
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert_eq!(joined, escaped, "nothing lost or altered across parts");
    assert!(reqs[per_chat..]
        .iter()
        .all(|r| r.json()["chat_id"] == "@ops_room"));
}

#[tokio::test]
async fn slack_and_discord_truncate_visibly() {
    let slack_rx = Receiver::ok();
    let discord_rx = Receiver::ok();
    let targets = [
        with_option(
            target("slack", "slack://T1/B2/C3"),
            "api_base",
            &slack_rx.base(),
        ),
        with_option(
            target("discord", "discord://1/tok"),
            "api_base",
            &discord_rx.base(),
        ),
    ];
    let text = "x".repeat(10_000);
    let d = notifiers(&targets, &secrets(&[]))
        .notify(Level::Info, "big", &text)
        .await;
    assert!(d.iter().all(|d| d.result.is_ok()), "{d:?}");
    let slack_text = slack_rx.requests()[0].json()["attachments"][0]["text"]
        .as_str()
        .expect("text")
        .to_string();
    let kept = slack_text.chars().take_while(|c| *c == 'x').count();
    assert!(
        slack_text.ends_with(&truncation_marker(10_000 - kept)),
        "{slack_text}"
    );
    let desc = discord_rx.requests()[0].json()["embeds"][0]["description"]
        .as_str()
        .expect("description")
        .to_string();
    assert_eq!(desc.chars().count(), 4096);
    let kept = desc.chars().take_while(|c| *c == 'x').count();
    assert!(desc.ends_with(&truncation_marker(10_000 - kept)), "{desc}");
}

#[tokio::test]
async fn level_filter_and_disabled_targets() {
    let warn_rx = Receiver::ok();
    let all_rx = Receiver::ok();
    let off_rx = Receiver::ok();
    let mut warn = target("warn", &format!("json://{}/w", warn_rx.addr));
    warn.min_level = Level::Warn;
    let all = target("all", &format!("json://{}/a", all_rx.addr));
    let mut off = target("off", &format!("json://{}/o", off_rx.addr));
    off.enabled = false;
    let n = notifiers(&[warn, all, off], &secrets(&[]));

    let d = n.notify(Level::Info, "info", "i").await;
    assert_eq!(
        d.iter().map(|d| d.target.as_str()).collect::<Vec<_>>(),
        ["all"]
    );
    let d = n.notify(Level::Critical, "crit", "c").await;
    assert_eq!(
        d.iter().map(|d| d.target.as_str()).collect::<Vec<_>>(),
        ["warn", "all"]
    );
    assert_eq!(warn_rx.requests().len(), 1);
    assert_eq!(warn_rx.requests()[0].json()["level"], "critical");
    assert_eq!(all_rx.requests().len(), 2);
    assert!(off_rx.requests().is_empty());
}

#[tokio::test]
async fn slack_webhook_in_one_secret_posts_once_per_channel() {
    let rx = Receiver::ok();
    let t = with_option(
        target("slack", "slack://{secret:slack_webhook}/#ops/@oncall"),
        "api_base",
        &rx.base(),
    );
    let s = secrets(&[("slack_webhook", "T0001/B0002/CCCC")]);
    let d = notifiers(&[t], &s).notify(Level::Warn, "t", "m").await;
    assert_eq!(d[0].result, Ok(()));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.path == "/services/T0001/B0002/CCCC"));
    assert_eq!(reqs[0].json()["channel"], "#ops");
    assert_eq!(reqs[1].json()["channel"], "@oncall");
}
