//! The channels: each one parses its URL form, renders a [`crate::Message`] into its
//! service's payload, and delivers it. Shared here: option handling and API base URLs.

pub(crate) mod discord;
pub(crate) mod email;
pub(crate) mod slack;
pub(crate) mod telegram;
pub(crate) mod webhook;

use std::collections::BTreeMap;

use reqwest::Url;

use crate::error::NotifyError;

/// A target's options (URL query pairs, then `options` from kbz.toml), already
/// secret-resolved. Every key must be consumed by the channel; leftovers are typos.
#[derive(Debug)]
pub(crate) struct Options {
    target: String,
    map: BTreeMap<String, String>,
}

impl Options {
    /// Options of target `target`.
    pub(crate) fn new(target: &str, map: BTreeMap<String, String>) -> Self {
        Options {
            target: target.to_string(),
            map,
        }
    }

    /// Removes and returns `key`.
    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    /// Removes and returns every key starting with `prefix` (the prefix stripped).
    pub(crate) fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let keys: Vec<String> = self
            .map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let v = self.map.remove(&k)?;
                Some((k[prefix.len()..].to_string(), v))
            })
            .collect()
    }

    /// Fails on the first key nobody took.
    pub(crate) fn finish(self, channel: &'static str, valid: &[&str]) -> Result<(), NotifyError> {
        match self.map.into_keys().next() {
            None => Ok(()),
            Some(option) => Err(NotifyError::UnknownOption {
                target: self.target,
                option,
                channel,
                valid: valid.join(", "),
            }),
        }
    }
}

/// The API base of an HTTP service: the `api_base` option (tests, proxies, self-hosted
/// gateways) or the real service. Returned without a trailing `/`.
pub(crate) fn api_base(
    target: &str,
    option: Option<String>,
    default: &str,
) -> Result<String, NotifyError> {
    let Some(base) = option else {
        return Ok(default.to_string());
    };
    let parsed = Url::parse(&base).map_err(|e| NotifyError::BadUrl {
        target: target.to_string(),
        reason: format!("option `api_base` is not a URL ({e}); expected e.g. `{default}`"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(NotifyError::BadUrl {
            target: target.to_string(),
            reason: format!(
                "option `api_base` must be an http:// or https:// URL like `{default}`"
            ),
        });
    }
    Ok(base.trim_end_matches('/').to_string())
}

/// Whether every character of a token is in `allowed` or alphanumeric.
pub(crate) fn token_ok(token: &str, allowed: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || allowed.contains(c))
}

/// An HTTP endpoint whose URL holds a secret, with the masked form used in `Debug`.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub url: Url,
    pub shown: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Endpoint {
    /// Parses `url` (built by the crate from validated parts) and masks its path and query.
    pub(crate) fn new(target: &str, url: &str) -> Result<Self, NotifyError> {
        let url = Url::parse(url).map_err(|e| NotifyError::BadUrl {
            target: target.to_string(),
            reason: format!("the resulting URL is not valid ({e})"),
        })?;
        Ok(Endpoint {
            shown: masked(&url),
            url,
        })
    }
}

/// `scheme://host[:port]/****`: enough to recognise an endpoint, nothing secret.
pub(crate) fn masked(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    if url.path() != "/" || url.query().is_some() {
        out.push_str("/****");
    }
    out
}
