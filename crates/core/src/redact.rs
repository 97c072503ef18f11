//! `Redactor`: the one masker every output path uses (plans, `--json`, logs, the journal's
//! readers, notifications, error messages). It knows every secret and the values derived
//! from one: escaped, percent-encoded, hex, base64 (also inside a longer base64 text such
//! as `user:password`), its sha256, and, for generated secrets, every fragment of 8 or more
//! characters (a truncated or prefixed secret such as keepalived's `auth_pass`).

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use std::fmt;

use crate::secret::Secrets;

/// The mask written in place of a secret.
pub const MASK: &str = "****";

/// The shortest fragment of a generated secret that is masked on its own.
pub const FRAGMENT: usize = 8;

/// Masks secret values and every form derived from them.
#[derive(Clone, Default)]
pub struct Redactor {
    patterns: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} patterns)", self.patterns.len())
    }
}

impl Redactor {
    /// A redactor for these values; values shorter than 4 characters are ignored (they
    /// would mask ordinary words).
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut r = Redactor::default();
        r.extend(values.into_iter().filter(|v| v.chars().count() >= 4));
        r
    }

    /// A redactor for every value of a secrets store.
    pub fn from_secrets(secrets: &Secrets) -> Self {
        Redactor::new(secrets.values().map(|s| s.expose().to_string()))
    }

    /// Remembers `secret` and its derived forms (any non-empty value).
    pub fn add(&mut self, secret: &str) {
        self.push_forms(secret);
        self.rebuild();
    }

    /// Remembers several secrets.
    pub fn extend<I: IntoIterator<Item = String>>(&mut self, values: I) {
        for v in values {
            self.push_forms(&v);
        }
        self.rebuild();
    }

    /// Adds everything another redactor knows.
    pub fn merge(&mut self, other: &Redactor) {
        for p in &other.patterns {
            if !self.patterns.contains(p) {
                self.patterns.push(p.clone());
            }
        }
        self.rebuild();
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every known secret form replaced by `****` (overlapping and adjacent
    /// matches become one mask).
    pub fn redact(&self, text: &str) -> String {
        let Some(m) = &self.matcher else {
            return text.to_string();
        };
        let mut spans: Vec<(usize, usize)> = m
            .find_overlapping_iter(text)
            .map(|x| (x.start(), x.end()))
            .collect();
        if spans.is_empty() {
            return text.to_string();
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut i = 0;
        while i < spans.len() {
            let (start, mut end) = spans[i];
            while i + 1 < spans.len() && spans[i + 1].0 <= end {
                i += 1;
                end = end.max(spans[i].1);
            }
            out.push_str(&text[pos..start]);
            out.push_str(MASK);
            pos = end;
            i += 1;
        }
        out.push_str(&text[pos..]);
        out
    }

    /// True when `text` holds any known secret form.
    pub fn leaks(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// Every form this redactor masks (for tests that search outputs for leaks).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    fn push_forms(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        let mut forms = derived_forms(s);
        forms.retain(|f| !f.is_empty());
        for f in forms {
            if !self.patterns.contains(&f) {
                self.patterns.push(f);
            }
        }
    }

    fn rebuild(&mut self) {
        self.matcher = if self.patterns.is_empty() {
            None
        } else {
            // Patterns are plain strings; building cannot fail below the size limits.
            AhoCorasick::new(&self.patterns).ok()
        };
    }
}

/// The value itself and every form of it that kbz or a tool might print.
pub fn derived_forms(s: &str) -> Vec<String> {
    let bytes = s.as_bytes();
    let mut forms = vec![
        s.to_string(),
        percent_encode(s),
        json_escape(s),
        backslash_escape(s),
        s.replace('\'', "''"),
        hex::encode(bytes),
        hex::encode_upper(bytes),
        crate::shell::sha256_hex(bytes),
    ];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        forms.push(engine.encode(bytes));
        forms.push(engine.encode(bytes).trim_end_matches('=').to_string());
        forms.extend(base64_cores(engine, bytes));
    }
    if is_generated_shape(s) {
        let chars: Vec<char> = s.chars().collect();
        for w in chars.windows(FRAGMENT) {
            forms.push(w.iter().collect());
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// A generated secret: long and alphanumeric. Only these are masked by fragments, so a
/// user's token with common words in it does not mask those words everywhere.
fn is_generated_shape(s: &str) -> bool {
    s.len() >= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The part of the base64 of `prefix + bytes + suffix` that depends on `bytes` alone, for
/// each of the three alignments: what a Basic-auth header of `user:password` contains.
fn base64_cores(engine: &base64::engine::GeneralPurpose, bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for k in 0..3usize {
        let mut padded = vec![0u8; k];
        padded.extend_from_slice(bytes);
        let enc = engine.encode(&padded);
        let first = usize::from(k > 0);
        let last = padded.len() / 3;
        if last > first && (last - first) * 4 >= FRAGMENT {
            out.push(enc[first * 4..last * 4].to_string());
        }
    }
    out
}

/// Percent-encoding of everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_escape(s: &str) -> String {
    let q = serde_json::Value::String(s.to_string()).to_string();
    q[1..q.len() - 1].to_string()
}

/// A backslash before backslash, quotes, space and `#` (config-file quoting).
fn backslash_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ' ' | '"' | '\'' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "ADm7DwkvyaRdWQcWmRhiwFBs6mHM8S2L";

    #[test]
    fn masks_the_value_and_derived_forms() {
        let r = Redactor::new([S.to_string()]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let cases = [
            format!("masterauth \"{S}\""),
            format!("auth_pass {}", &S[..8]),
            format!("x{}y", &S[5..20]),
            format!("user default #{}", crate::shell::sha256_hex(S.as_bytes())),
            format!("Authorization: Basic {}", b64.encode(format!("admin:{S}"))),
            format!("Basic {}", b64.encode(format!("ab:{S}:tail"))),
            hex::encode(S),
        ];
        for c in cases {
            let out = r.redact(&c);
            assert!(out.contains(MASK), "{c} -> {out}");
            for w in S.as_bytes().windows(FRAGMENT) {
                assert!(
                    !out.contains(std::str::from_utf8(w).expect("ascii")),
                    "{out}"
                );
            }
            assert!(!r.leaks(&out), "{out}");
        }
        assert_eq!(r.redact(&format!("a {S}{S} b")), "a **** b");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn user_tokens_mask_exact_and_encoded_forms_only() {
        let mut r = Redactor::default();
        r.add("p@ss/word services");
        r.add("B2");
        assert_eq!(
            r.redact("x p@ss/word services y p%40ss%2Fword%20services z B2 services"),
            "x **** y **** z **** services"
        );
        assert_eq!(r.redact("a \"q\\\"x\" b"), "a \"q\\\"x\" b");
        r.add("q\"x");
        assert_eq!(r.redact("{\"k\":\"q\\\"x\"}"), "{\"k\":\"****\"}");
        assert!(format!("{r:?}").starts_with("Redactor("));
    }

    #[test]
    fn short_values_are_ignored_by_new() {
        let r = Redactor::new(["ab".to_string(), String::new()]);
        assert!(r.is_empty());
        assert_eq!(r.redact("ab"), "ab");
    }
}
