//! Email over SMTP with lettre: `mailtos://` (implicit TLS, port 465), `mailto://`
//! (STARTTLS required, port 587) or `mailto://...?mode=plain` (a local relay, port 25), with
//! optional `user:password@` authentication. Subject `[kbz] [LEVEL] title`; a plain-text
//! body with timestamp, server and message.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::Options;
use crate::error::NotifyError;
use crate::message::Message;
use crate::redact::Redactor;
use crate::retry::{self, Failure, GaveUp, Retry, RetryPolicy};
use crate::url_parse::Apprise;

/// Options this channel accepts (also as URL query pairs).
pub(crate) const OPTIONS: &[&str] = &["to", "from", "mode", "ca_file"];

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// TLS from the first byte (SMTPS).
    Tls,
    /// Plain connect, then STARTTLS, refusing to continue without it.
    StartTls,
    /// No encryption: only for a relay on the same host or a trusted link.
    Plain,
}

impl Mode {
    fn default_port(self) -> u16 {
        match self {
            Mode::Tls => 465,
            Mode::StartTls => 587,
            Mode::Plain => 25,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Tls => "tls",
            Mode::StartTls => "starttls",
            Mode::Plain => "plain",
        }
    }
}

/// A configured SMTP relay and envelope.
#[derive(Clone)]
pub(crate) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    shown: String,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("server", &self.shown)
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `mailto[s]://[user[:password]@]host[:port][?to=a@b,c@d&from=e@f&mode=...]`.
pub(crate) fn from_apprise(
    target: &str,
    a: &Apprise,
    opts: &mut Options,
    redactor: &mut Redactor,
    timeout: Duration,
) -> Result<Email, NotifyError> {
    let bad = |reason: String| NotifyError::BadUrl {
        target: target.to_string(),
        reason,
    };
    if let Some(pw) = &a.password {
        redactor.add(pw);
    }
    let (host, port) = a.host_port().map_err(&bad)?;
    let mode = match (a.scheme.as_str(), opts.take("mode").as_deref()) {
        ("mailtos", None) => Mode::Tls,
        ("mailto", None) => Mode::StartTls,
        (_, Some("tls" | "ssl")) => Mode::Tls,
        (_, Some("starttls")) => Mode::StartTls,
        ("mailto", Some("plain" | "none")) => Mode::Plain,
        ("mailtos", Some("plain" | "none")) => {
            return Err(bad(
                "mailtos:// is always encrypted; use mailto://...?mode=plain for a plain relay"
                    .into(),
            ))
        }
        (_, Some(other)) => {
            return Err(bad(format!(
                "option `mode` is `{other}`; expected `tls`, `starttls` or `plain`"
            )))
        }
        _ => unreachable!("only mailto and mailtos reach the email channel"),
    };
    let port = port.unwrap_or(mode.default_port());
    let user = a.user.clone();
    let from_text = opts
        .take("from")
        .or_else(|| user.clone().filter(|u| u.contains('@')));
    let from_text = from_text.unwrap_or_else(|| format!("kbz@{host}"));
    let from: Mailbox = from_text
        .parse()
        .map_err(|e| bad(format!("`from` address `{from_text}` is not valid ({e})")))?;
    let to = match opts.take("to") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Mailbox>()
                    .map_err(|e| bad(format!("`to` address `{s}` is not valid ({e})")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![from.clone()],
    };
    if to.is_empty() {
        return Err(bad("option `to` lists no address".into()));
    }
    let ca_file = opts.take("ca_file").map(PathBuf::from);
    let tls = match mode {
        Mode::Plain => Tls::None,
        Mode::Tls | Mode::StartTls => {
            let mut params = TlsParameters::builder(host.clone());
            if let Some(path) = &ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| bad(format!("option `ca_file` {}: {e}", path.display())))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    bad(format!(
                        "option `ca_file` {} is not a PEM certificate ({e})",
                        path.display()
                    ))
                })?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| bad(format!("TLS settings for `{host}` are not usable ({e})")))?;
            if mode == Mode::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(user) = &user {
        let password = a.password.clone().unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let shown = format!(
        "smtp+{}://{}{host}:{port}",
        mode.name(),
        user.as_deref().map(|u| format!("{u}@")).unwrap_or_default()
    );
    Ok(Email {
        transport: builder.build(),
        from,
        to,
        shown,
    })
}

/// `[kbz] [LEVEL] title`.
pub(crate) fn subject(msg: &Message) -> String {
    format!("[kbz] [{}] {}", msg.level, msg.title)
}

/// The plain-text body.
pub(crate) fn body(msg: &Message) -> String {
    format!(
        "{title}\n\nTime:   {time}\nServer: {server}\nLevel:  {level}\n\n{text}\n\n-- \nkbz {version}\n",
        title = msg.title,
        time = msg.iso_time(),
        server = msg.server,
        level = msg.level,
        text = msg.text,
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Builds and sends the email, retrying transient SMTP failures.
pub(crate) async fn send(
    email: &Email,
    msg: &Message,
    policy: RetryPolicy,
    timeout: Duration,
    redactor: &Redactor,
    target: &str,
) -> Result<(), GaveUp> {
    let mut builder = lettre::Message::builder()
        .from(email.from.clone())
        .subject(subject(msg))
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(to.clone());
    }
    let message = builder.body(body(msg)).map_err(|e| GaveUp {
        error: NotifyError::Smtp(redactor.redact(&format!("cannot build the message: {e}"))),
        attempts: 0,
    })?;
    retry::run(policy, timeout, target, || {
        let message = message.clone();
        async move {
            email
                .transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| smtp_failure(&e, timeout, redactor))
        }
    })
    .await
}

/// Maps a lettre error; its text (which includes the server's reply or the connection
/// failure) is kept, redacted.
fn smtp_failure(
    e: &lettre::transport::smtp::Error,
    timeout: Duration,
    redactor: &Redactor,
) -> Failure {
    if e.is_timeout() {
        return Failure {
            error: NotifyError::Timeout(timeout.as_secs()),
            retry: Retry::Never,
        };
    }
    // Permanent (5xx) replies and local errors will not change on a retry; transient (4xx)
    // replies and connection failures may.
    let retry = if e.is_permanent() || e.is_tls() || e.is_client() {
        Retry::Never
    } else {
        Retry::Backoff
    };
    Failure {
        error: NotifyError::Smtp(redactor.redact(&e.to_string())),
        retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Level;
    use std::collections::BTreeMap;

    fn parse(url: &str) -> Result<Email, NotifyError> {
        let a = Apprise::split(url).expect("split");
        let mut opts = Options::new("mail", a.query.iter().cloned().collect::<BTreeMap<_, _>>());
        let mut r = Redactor::default();
        let e = from_apprise("mail", &a, &mut opts, &mut r, Duration::from_secs(5))?;
        opts.finish("email", OPTIONS)?;
        Ok(e)
    }

    #[test]
    fn defaults_and_forms() {
        let e = parse("mailtos://ops%40x.org:pw@smtp.x.org").expect("parse");
        assert_eq!(e.shown, "smtp+tls://ops@x.org@smtp.x.org:465");
        assert_eq!(e.from.to_string(), "ops@x.org");
        assert_eq!(e.to, vec![e.from.clone()]);
        assert!(!format!("{e:?}").contains("pw"));

        let e = parse("mailto://u:pw@smtp.x.org?to=a@b.c,d@e.f&from=kbz@x.org").expect("parse");
        assert_eq!(e.shown, "smtp+starttls://u@smtp.x.org:587");
        assert_eq!(e.to.len(), 2);

        let e = parse("mailto://127.0.0.1:2525?mode=plain&to=a@b.c").expect("parse");
        assert_eq!(e.shown, "smtp+plain://127.0.0.1:2525");
        assert_eq!(e.from.to_string(), "kbz@127.0.0.1");
    }

    #[test]
    fn bad_forms() {
        let err = parse("mailtos://h?mode=plain").unwrap_err().to_string();
        assert!(err.contains("always encrypted"), "{err}");
        let err = parse("mailto://h?mode=tls13").unwrap_err().to_string();
        assert!(err.contains("`tls`, `starttls` or `plain`"), "{err}");
        let err = parse("mailto://h?to=not-an-address")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`to` address `not-an-address`"), "{err}");
        let err = parse("mailto://h?cc=a@b.c").unwrap_err().to_string();
        assert!(err.contains("unknown option `cc`"), "{err}");
        let err = parse("mailto://h?ca_file=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn subject_and_body() {
        let m = Message::new(Level::Critical, "Disk full", "db1: /var 100%", "prod");
        assert_eq!(subject(&m), "[kbz] [CRITICAL] Disk full");
        let b = body(&m);
        assert!(b.contains("Server: prod\n"), "{b}");
        assert!(b.contains(&format!("Time:   {}\n", m.iso_time())), "{b}");
        assert!(b.contains("\n\ndb1: /var 100%\n"), "{b}");
    }
}
