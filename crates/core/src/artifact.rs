//! Pinned artifacts: files Debian does not ship (a K3s binary, a Patroni wheel, an upstream
//! manifest), each pinned by version + sha256 + source. Components declare a default pin in
//! code; `[artifacts.NAME]` in kbz.toml overrides it. The controller fetches each pin once
//! into its download cache ([`crate::cache::Cache`]), verifies the sha256, and the engine
//! pushes it to hosts with a [`crate::Resource::Artifact`].
//!
//! Sources (`source = "..."`, `{version}` is replaced by the pin's version):
//! - `https://...` / `http://...`: downloaded by the controller.
//! - `file:///abs/path`: a file on the controller (air-gapped fleets, the lab).
//! - `pip:NAME`: `pip download --no-deps --only-binary=:all: NAME==VERSION`, run on the
//!   controller through pip's own configuration (index, proxy).

use kbz_errors::{Code, Diagnostic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a pinned artifact comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "at", rename_all = "snake_case")]
pub enum ArtifactSource {
    /// An `http://` or `https://` URL (version already substituted).
    Url(String),
    /// An absolute path on the controller (from a `file://` source).
    File(String),
    /// A Python package fetched with `pip download`.
    Pip(String),
}

impl ArtifactSource {
    /// Parses a source string, replacing `{version}` with `version`.
    /// In URLs a `+` of the version is written `%2B` (`v1.31.4+k3s1` in a release path).
    pub fn parse(source: &str, version: &str) -> Result<ArtifactSource, String> {
        let t = source.trim();
        let is_url = t.starts_with("https://") || t.starts_with("http://");
        let s = if is_url {
            t.replace("{version}", &version.replace('+', "%2B"))
        } else {
            t.replace("{version}", version)
        };
        if is_url {
            let host = s.split("://").nth(1).unwrap_or("");
            if host.is_empty() || host.starts_with('/') {
                return Err(format!("`{source}` has no host after the scheme"));
            }
            if s.chars().any(char::is_whitespace) {
                return Err(format!("`{source}` contains white space"));
            }
            Ok(ArtifactSource::Url(s))
        } else if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(format!(
                    "`{source}` is not an absolute file:// path; write it like \
                     `file:///srv/kbz/artifacts/NAME-{{version}}` (three slashes)"
                ));
            }
            Ok(ArtifactSource::File(path.to_string()))
        } else if let Some(name) = s.strip_prefix("pip:") {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
            if !ok {
                return Err(format!(
                    "`{source}` does not name a Python package; write it like `pip:patroni`"
                ));
            }
            Ok(ArtifactSource::Pip(name.to_string()))
        } else {
            Err(format!(
                "`{source}` is not a source kbz can fetch: use `https://...`, \
                 `file:///abs/path` or `pip:PACKAGE`"
            ))
        }
    }
}

impl fmt::Display for ArtifactSource {
    /// The source as shown in plans: URLs without user, password or query.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactSource::Url(u) => {
                let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
                let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
                let rest = rest.split('?').next().unwrap_or(rest);
                write!(f, "{scheme}://{rest}")
            }
            ArtifactSource::File(p) => write!(f, "file://{p}"),
            ArtifactSource::Pip(n) => write!(f, "pip:{n}"),
        }
    }
}

/// One pinned artifact: what it is, which version, its sha256, where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactPin {
    /// Name used in kbz.toml (`[artifacts.NAME]`), plans and cache messages.
    pub name: String,
    /// Version (substituted for `{version}` in the source).
    pub version: String,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
    /// The source template (`https://...`, `file:///...`, `pip:NAME`), may hold `{version}`.
    pub source: String,
}

impl ArtifactPin {
    /// A pin from its parts. For defaults in code; every component's tests run
    /// [`ArtifactPin::check`] on its defaults, so a bad default never ships.
    pub fn new(name: &str, version: &str, sha256: &str, source: &str) -> ArtifactPin {
        ArtifactPin {
            name: name.into(),
            version: version.into(),
            sha256: sha256.trim().to_ascii_lowercase(),
            source: source.into(),
        }
    }

    /// Where to fetch it from, with the version substituted.
    pub fn resolved_source(&self) -> Result<ArtifactSource, String> {
        ArtifactSource::parse(&self.source, &self.version)
    }

    /// Problems with this pin, as messages (empty when it is usable).
    pub fn check(&self) -> Vec<String> {
        [
            check_sha256(&self.sha256),
            check_version(&self.version),
            self.resolved_source().err(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// A one-line description for plans: `k3s v1.31.4+k3s1 (sha256 0123abcd4567…) from URL`.
    pub fn describe(&self) -> String {
        let from = match self.resolved_source() {
            Ok(s) => s.to_string(),
            Err(_) => "(invalid source)".into(),
        };
        let sha = if self.sha256.is_empty() {
            "no sha256 pinned".to_string()
        } else {
            format!("sha256 {}…", self.sha256.get(..12).unwrap_or(&self.sha256))
        };
        format!("{} {} ({sha}) from {from}", self.name, self.version)
    }
}

/// `[artifacts.NAME]` in kbz.toml: overrides the pin a component declares in code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactOverride {
    /// Version.
    pub version: String,
    /// sha256 of the file for this version (required: a new version has new bytes).
    pub sha256: String,
    /// Source template; the default pin's (with the new `{version}`) when left out.
    #[serde(default)]
    pub source: Option<String>,
}

/// The pin to use: `default` as declared in code, or its `[artifacts.NAME]` override.
pub fn resolve(
    default: &ArtifactPin,
    overrides: &BTreeMap<String, ArtifactOverride>,
) -> ArtifactPin {
    match overrides.get(&default.name) {
        None => default.clone(),
        Some(o) => ArtifactPin {
            name: default.name.clone(),
            version: o.version.clone(),
            sha256: o.sha256.trim().to_ascii_lowercase(),
            source: o.source.clone().unwrap_or_else(|| default.source.clone()),
        },
    }
}

fn check_sha256(s: &str) -> Option<String> {
    let t = s.trim();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        None
    } else {
        Some(format!(
            "sha256 `{s}` is not 64 hexadecimal digits (compute it with `sha256sum FILE`)"
        ))
    }
}

fn check_version(v: &str) -> Option<String> {
    if v.trim().is_empty() {
        Some("version is empty".into())
    } else {
        crate::allow::version("version", v)
            .err()
            .map(|e| format!("{e}; write it like `4.0.6` or `v1.31.4+k3s1`"))
    }
}

/// Checks every `[artifacts.NAME]` entry (E008 with the line of the bad key).
pub(crate) fn check_overrides(
    overrides: &BTreeMap<String, ArtifactOverride>,
    path: &str,
    text: Option<&str>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (name, o) in overrides {
        let table = format!("artifacts.{name}");
        let at = |key: &str| text.and_then(|t| crate::toml_lines::key_line(t, &table, key));
        let mut bad = |key: &str, msg: String, hint: &str| {
            out.push(
                Diagnostic::new(Code::E008, format!("[{table}] {msg}"))
                    .at(path, at(key))
                    .hint(hint),
            );
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
        if !name_ok {
            bad(
                "version",
                format!("`{name}` is not an artifact name"),
                "artifact names are lowercase letters, digits, `-` and `_` (e.g. `k3s`, `patroni`)",
            );
        }
        if let Some(e) = check_version(&o.version) {
            bad(
                "version",
                e,
                "set `version` to the release the sha256 belongs to",
            );
        }
        if let Some(e) = check_sha256(&o.sha256) {
            bad(
                "sha256",
                e,
                "pin the bytes: `sha256sum FILE` (or `curl -fsSL URL | sha256sum`) and paste the \
                 64 digits",
            );
        }
        if let Some(s) = &o.source {
            if let Err(e) = ArtifactSource::parse(s, &o.version) {
                bad(
                    "source",
                    e,
                    "examples: `source = \"https://example.com/v{version}/tool\"`, \
                     `source = \"file:///srv/kbz/tool-{version}\"`, `source = \"pip:patroni\"`",
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sources_parse_with_the_version() {
        assert_eq!(
            ArtifactSource::parse("https://example.com/{version}/k3s", "v1.2"),
            Ok(ArtifactSource::Url("https://example.com/v1.2/k3s".into()))
        );
        assert_eq!(
            ArtifactSource::parse("file:///srv/a-{version}.whl", "4.0"),
            Ok(ArtifactSource::File("/srv/a-4.0.whl".into()))
        );
        assert_eq!(
            ArtifactSource::parse("pip:patroni", "4.0"),
            Ok(ArtifactSource::Pip("patroni".into()))
        );
        for bad in [
            "ftp://x/y",
            "file://relative",
            "pip:",
            "pip:a b",
            "https://",
            "k3s",
        ] {
            assert!(ArtifactSource::parse(bad, "1").is_err(), "{bad}");
        }
    }

    #[test]
    fn shown_sources_hide_credentials() {
        let s = ArtifactSource::Url("https://u:pw@example.com/f?token=x".into());
        assert_eq!(s.to_string(), "https://example.com/f");
    }

    #[test]
    fn overrides_replace_version_and_keep_the_default_source() {
        let d = ArtifactPin::new("k3s", "v1.0", SHA, "https://example.com/{version}/k3s");
        assert!(d.check().is_empty(), "{:?}", d.check());
        let mut o = BTreeMap::new();
        o.insert(
            "k3s".to_string(),
            ArtifactOverride {
                version: "v2.0".into(),
                sha256: SHA.to_uppercase(),
                source: None,
            },
        );
        let p = resolve(&d, &o);
        assert_eq!(
            p.resolved_source(),
            Ok(ArtifactSource::Url("https://example.com/v2.0/k3s".into()))
        );
        assert_eq!(p.sha256, SHA);
        o.get_mut("k3s").expect("k3s").source = Some("file:///srv/k3s-{version}".into());
        assert_eq!(
            resolve(&d, &o).resolved_source(),
            Ok(ArtifactSource::File("/srv/k3s-v2.0".into()))
        );
        let other = ArtifactPin::new("patroni", "4.0.6", SHA, "pip:patroni");
        assert_eq!(resolve(&other, &o), other);
    }

    #[test]
    fn bad_overrides_are_e008_with_lines() {
        let text =
            "[artifacts.patroni]\nversion = \"4.0 6\"\nsha256 = \"abc\"\nsource = \"ftp://x\"\n";
        let cfg: crate::Config = toml::from_str(text).expect("parse");
        let d = check_overrides(&cfg.artifacts, "kbz.toml", Some(text));
        let lines: Vec<_> = d
            .iter()
            .map(|d| (d.code, d.location.as_ref().and_then(|l| l.line)))
            .collect();
        assert_eq!(
            lines,
            vec![
                (Code::E008, Some(2)),
                (Code::E008, Some(3)),
                (Code::E008, Some(4))
            ],
            "{d:#?}"
        );
        assert!(
            d[1].message.contains("not 64 hexadecimal"),
            "{}",
            d[1].message
        );
    }
}
