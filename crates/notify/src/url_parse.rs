//! Apprise-style URL handling: `{secret:NAME}` substitution (percent-encoded, so any
//! character in a token or password is safe) and splitting `scheme://user:pass@a/b/c?k=v`
//! into decoded parts without treating tokens as host names.

use kbz_core::Secrets;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::NotifyError;
use crate::redact::Redactor;

/// Everything but RFC 3986 unreserved characters is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` for use as one URL component.
pub(crate) fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Decodes `%XX` sequences; invalid UTF-8 is an error message (not echoing the text).
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "a percent-encoded part is not valid UTF-8".to_string())
}

/// Replaces every `{secret:NAME}` in `template` with the secret's value, percent-encoded
/// when `encode` is set (URLs) or verbatim otherwise (option values). Each value is
/// remembered by `redactor`.
pub(crate) fn resolve_placeholders(
    target: &str,
    template: &str,
    secrets: &Secrets,
    redactor: &mut Redactor,
    encode: bool,
) -> Result<String, NotifyError> {
    const OPEN: &str = "{secret:";
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err(NotifyError::BadUrl {
                target: target.to_string(),
                reason: "a `{secret:` placeholder is not closed with `}`".into(),
            });
        };
        let name = after[..end].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(NotifyError::BadUrl {
                target: target.to_string(),
                reason: format!(
                    "`{{secret:{name}}}` is not a valid placeholder: secret names use letters, \
                     digits, `_`, `-` and `.`"
                ),
            });
        }
        let secret = secrets
            .get(name)
            .ok_or_else(|| NotifyError::MissingSecret {
                target: target.to_string(),
                name: name.to_string(),
            })?;
        let value = secret.expose();
        redactor.add(value);
        if encode {
            out.push_str(&percent_encode(value));
        } else {
            out.push_str(value);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A split Apprise URL. `authority` and `path` stay raw (still percent-encoded) because
/// their meaning depends on the scheme; userinfo and query are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Apprise {
    /// Lower-cased scheme without `://`.
    pub scheme: String,
    /// Decoded user name, when `user@` or `user:pass@` is present.
    pub user: Option<String>,
    /// Decoded password, when `user:pass@` is present.
    pub password: Option<String>,
    /// The raw text between the userinfo and the first `/`.
    pub authority: String,
    /// Decoded, non-empty path segments after the authority.
    pub segments: Vec<String>,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
}

impl Apprise {
    /// Splits `url`; errors describe the problem without echoing the URL.
    pub(crate) fn split(url: &str) -> Result<Apprise, String> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(
                "the URL has no `scheme://` (expected e.g. `slack://`, `tgram://`, \
                        `mailto://`, `json://` or `https://`)"
                    .into(),
            );
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err("the URL scheme is not valid".into());
        }
        let (main, query_text) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let (first, path) = match main.split_once('/') {
            Some((a, p)) => (a, p),
            None => (main, ""),
        };
        let (userinfo, authority) = match first.rfind('@') {
            Some(i) => (Some(&first[..i]), &first[i + 1..]),
            None => (None, first),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => match ui.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
                None => (Some(percent_decode(ui)?), None),
            },
        };
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect::<Result<Vec<_>, _>>()?;
        let mut query = Vec::new();
        if let Some(q) = query_text {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                query.push((percent_decode(k)?, percent_decode(v)?));
            }
        }
        Ok(Apprise {
            scheme: scheme.to_ascii_lowercase(),
            user: user.filter(|u| !u.is_empty()),
            password,
            authority: authority.to_string(),
            segments,
            query,
        })
    }

    /// The authority followed by the path segments, all decoded: the token list of
    /// `slack://A/B/C`, `discord://ID/TOKEN` and `tgram://TOKEN/CHAT`. A part that decodes
    /// to several `/`-separated tokens is split, so one secret may hold `A/B/C` whole
    /// (`slack://{secret:slack_webhook}`).
    pub(crate) fn tokens(&self) -> Result<Vec<String>, String> {
        let mut parts = Vec::new();
        if !self.authority.is_empty() {
            parts.push(percent_decode(&self.authority)?);
        }
        parts.extend(self.segments.iter().cloned());
        Ok(parts
            .iter()
            .flat_map(|p| p.split('/'))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// The authority as `host` and optional `port` (IPv6 in brackets allowed).
    pub(crate) fn host_port(&self) -> Result<(String, Option<u16>), String> {
        let a = self.authority.as_str();
        if a.is_empty() {
            return Err("the URL has no host".into());
        }
        let (host, port) = if let Some(rest) = a.strip_prefix('[') {
            let Some((h, after)) = rest.split_once(']') else {
                return Err("an IPv6 host is missing its closing `]`".into());
            };
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match a.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (a.to_string(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| "the port is not a number from 1 to 65535".to_string())?,
            ),
        };
        let host = percent_decode(&host)?;
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        Ok((host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Secret;

    #[test]
    fn splits_userinfo_host_port_path_and_query() {
        let a = Apprise::split(
            "mailtos://me%40x.org:p%2Fw@smtp.x.org:2465/ignored?to=a@b,c@d&from=e@f",
        )
        .expect("split");
        assert_eq!(a.scheme, "mailtos");
        assert_eq!(a.user.as_deref(), Some("me@x.org"));
        assert_eq!(a.password.as_deref(), Some("p/w"));
        assert_eq!(
            a.host_port().expect("host"),
            ("smtp.x.org".to_string(), Some(2465))
        );
        assert_eq!(a.segments, vec!["ignored"]);
        assert_eq!(
            a.query,
            vec![
                ("to".to_string(), "a@b,c@d".to_string()),
                ("from".to_string(), "e@f".to_string())
            ]
        );
    }

    #[test]
    fn tokens_keep_colons() {
        let a = Apprise::split("TGRAM://123456:ABC-def/-100200/").expect("split");
        assert_eq!(a.scheme, "tgram");
        assert_eq!(
            a.tokens().expect("tokens"),
            vec!["123456:ABC-def", "-100200"]
        );
    }

    #[test]
    fn one_part_may_hold_several_tokens() {
        let a = Apprise::split("slack://T1%2FB2%2FC3/#ops").expect("split");
        assert_eq!(a.tokens().expect("tokens"), vec!["T1", "B2", "C3", "#ops"]);
    }

    #[test]
    fn ipv6_hosts() {
        let a = Apprise::split("mailto://[::1]:25").expect("split");
        assert_eq!(a.host_port().expect("hp"), ("::1".to_string(), Some(25)));
    }

    #[test]
    fn bad_forms_have_clear_errors() {
        assert!(Apprise::split("slack:/a/b")
            .unwrap_err()
            .contains("scheme://"));
        assert!(Apprise::split("sl ack://a").unwrap_err().contains("scheme"));
        let a = Apprise::split("mailto://host:99999").expect("split");
        assert!(a.host_port().unwrap_err().contains("port"));
        let a = Apprise::split("mailto://user@").expect("split");
        assert!(a.host_port().unwrap_err().contains("no host"));
    }

    #[test]
    fn placeholders_are_resolved_encoded_and_redacted() {
        let mut secrets = Secrets::in_memory();
        secrets.set("pw", Secret::new("a:b@c/d"));
        let mut r = Redactor::default();
        let out = resolve_placeholders("t", "mailto://u:{secret:pw}@h", &secrets, &mut r, true)
            .expect("resolve");
        assert_eq!(out, "mailto://u:a%3Ab%40c%2Fd@h");
        let a = Apprise::split(&out).expect("split");
        assert_eq!(a.password.as_deref(), Some("a:b@c/d"));
        assert_eq!(r.redact(&out), "mailto://u:****@h");
        let verbatim =
            resolve_placeholders("t", "Bearer {secret:pw}", &secrets, &mut r, false).expect("v");
        assert_eq!(verbatim, "Bearer a:b@c/d");
    }

    #[test]
    fn placeholder_errors() {
        let secrets = Secrets::in_memory();
        let mut r = Redactor::default();
        let e = resolve_placeholders("t", "slack://{secret:nope}/b/c", &secrets, &mut r, true)
            .unwrap_err();
        assert_eq!(
            e,
            NotifyError::MissingSecret {
                target: "t".into(),
                name: "nope".into()
            }
        );
        let e = resolve_placeholders("t", "slack://{secret:x", &secrets, &mut r, true).unwrap_err();
        assert!(e.to_string().contains("not closed"), "{e}");
        let e =
            resolve_placeholders("t", "slack://{secret:a b}", &secrets, &mut r, true).unwrap_err();
        assert!(e.to_string().contains("not a valid placeholder"), "{e}");
    }
}
