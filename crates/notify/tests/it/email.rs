//! Email through a real SMTP server (aiosmtpd) on loopback: a plain relay, STARTTLS and
//! implicit TLS with authentication, a refused downgrade, and a wrong password.

use kbz_core::{Level, Notifier};

use crate::smtp::{SmtpServer, TestCert};
use crate::{notifiers, secrets, target, with_option};

const TEXT: &str = "Module 5 (postgres) failed on db1.\nPatroni did not elect a leader.";

#[tokio::test]
async fn plain_relay_receives_subject_and_body() {
    let smtp = SmtpServer::start("plain", None, None);
    let t = target(
        "mail",
        &format!(
            "mailto://127.0.0.1:{}?mode=plain&to=ops@example.org,dba@example.org&from=kbz@example.org",
            smtp.port
        ),
    );
    let d = notifiers(&[t], &secrets(&[]))
        .notify(Level::Critical, "kbz install failed on prod: E031", TEXT)
        .await;
    assert_eq!(d[0].result, Ok(()), "{d:?}");
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(
        m["subject"],
        "[kbz] [CRITICAL] kbz install failed on prod: E031"
    );
    assert_eq!(m["mail_from"], "kbz@example.org");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.org", "dba@example.org"])
    );
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["authenticated_as"], serde_json::Value::Null);
    let body = m["body"].as_str().expect("body");
    assert!(
        body.starts_with("kbz install failed on prod: E031\n\nTime:   "),
        "{body}"
    );
    assert!(
        body.contains("\nServer: prod\nLevel:  CRITICAL\n\n"),
        "{body}"
    );
    assert!(body.contains(TEXT), "{body}");
}

#[tokio::test]
async fn starttls_with_authentication() {
    let cert = TestCert::new();
    let smtp = SmtpServer::start("starttls", Some(("kbz", "s3cret-Pass")), Some(&cert));
    let t = with_option(
        target(
            "mail",
            &format!(
                "mailto://kbz:{{secret:smtp_password}}@127.0.0.1:{}?to=ops@example.org",
                smtp.port
            ),
        ),
        "ca_file",
        cert.cert.to_str().expect("utf-8 path"),
    );
    let s = secrets(&[("smtp_password", "s3cret-Pass")]);
    let d = notifiers(&[t], &s)
        .notify(Level::Warn, "replica lagging", "db2 is 5 MiB behind")
        .await;
    assert_eq!(d[0].result, Ok(()), "{d:?}");
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["authenticated_as"], "kbz");
    assert_eq!(msgs[0]["tls"], true);
    assert_eq!(msgs[0]["subject"], "[kbz] [WARN] replica lagging");
    // No `from` given and the user is not an address: kbz@host.
    assert_eq!(msgs[0]["mail_from"], "kbz@127.0.0.1");
}

#[tokio::test]
async fn implicit_tls_with_authentication() {
    let cert = TestCert::new();
    let smtp = SmtpServer::start("tls", Some(("ops@example.org", "pa:ss@w/rd")), Some(&cert));
    let t = with_option(
        target(
            "mail",
            &format!(
                "mailtos://ops%40example.org:{{secret:smtp_password}}@127.0.0.1:{}",
                smtp.port
            ),
        ),
        "ca_file",
        cert.cert.to_str().expect("utf-8 path"),
    );
    // A password full of URL delimiters works because placeholders are substituted safely.
    let s = secrets(&[("smtp_password", "pa:ss@w/rd")]);
    let d = notifiers(&[t], &s)
        .notify(Level::Info, "backup done", "postgres: 1.2 GiB")
        .await;
    assert_eq!(d[0].result, Ok(()), "{d:?}");
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["authenticated_as"], "ops@example.org");
    // The user is an address: it is the sender and, without `to`, the recipient.
    assert_eq!(msgs[0]["mail_from"], "ops@example.org");
    assert_eq!(msgs[0]["rcpt_tos"], serde_json::json!(["ops@example.org"]));
}

#[tokio::test]
async fn starttls_is_required_when_asked_for() {
    // The server offers no STARTTLS: nothing (credentials included) may be sent in clear.
    let smtp = SmtpServer::start("plain", None, None);
    let t = target(
        "mail",
        &format!("mailto://kbz:pw@127.0.0.1:{}?to=ops@example.org", smtp.port),
    );
    let d = notifiers(&[t], &secrets(&[]))
        .notify(Level::Error, "t", "m")
        .await;
    let reason = d[0].result.clone().expect_err("no STARTTLS");
    assert!(reason.starts_with("E020: SMTP: "), "{reason}");
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let cert = TestCert::new();
    let smtp = SmtpServer::start("tls", None, Some(&cert));
    // No ca_file: the self-signed certificate is not trusted.
    let t = target(
        "mail",
        &format!("mailtos://127.0.0.1:{}?to=ops@example.org", smtp.port),
    );
    let d = notifiers(&[t], &secrets(&[]))
        .notify(Level::Error, "t", "m")
        .await;
    let reason = d[0].result.clone().expect_err("untrusted");
    assert!(reason.starts_with("E020: SMTP: "), "{reason}");
    assert!(reason.contains("certificate"), "{reason}");
    assert!(smtp.messages().is_empty());
}
