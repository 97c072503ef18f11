//! `Redactor`: replaces every secret a target knows (tokens, passwords, resolved
//! `{secret:NAME}` values, and their percent-encoded forms) with `****` in any text that
//! leaves the crate: error messages, delivery reasons and log fields.

use std::fmt;

use crate::url_parse::percent_encode;

/// The mask written in place of a secret.
pub(crate) const MASK: &str = "****";

/// The secret strings of one target.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Remembers `secret` (and its percent-encoded form) for masking.
    pub(crate) fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        for form in [secret.to_string(), percent_encode(secret)] {
            if !self.secrets.contains(&form) {
                self.secrets.push(form);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every known secret replaced by `****`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_encoded_forms_longest_first() {
        let mut r = Redactor::default();
        r.add("abc");
        r.add("p@ss/word abc");
        r.add("");
        assert_eq!(
            r.redact("x p@ss/word abc y p%40ss%2Fword%20abc z abc"),
            "x **** y **** z ****"
        );
        assert_eq!(format!("{r:?}"), "Redactor(3 secrets)");
    }
}
