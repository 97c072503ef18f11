//! kbz-errors: the E001-E068, E071-E072 and E076-E081 catalogue, the `Diagnostic` every user-visible failure becomes,
//! and its renderings (a framed box for terminals, plain text for logs, JSON for tools).
//!
//! Every crate keeps its own `thiserror` enum and implements [`HasCode`] so that a caller can
//! turn any failure into a [`Diagnostic`] carrying an E-code, a location and a fix.

mod catalogue;
mod diagnostic;

pub use catalogue::{lookup, Code, Entry, CATALOGUE};
pub use diagnostic::{summarize, Diagnostic, Location, MAX_PER_CODE};

/// Implemented by every crate's error enum: which catalogue entry the failure belongs to.
pub trait HasCode {
    /// The catalogue code of this failure.
    fn code(&self) -> Code;

    /// Converts the error into a [`Diagnostic`] (message from `Display`, no location).
    fn to_diagnostic(&self) -> Diagnostic
    where
        Self: std::fmt::Display,
    {
        Diagnostic::new(self.code(), self.to_string())
    }
}

/// The error returned by [`explain`] for a code outside the catalogue.
#[derive(Debug, thiserror::Error)]
#[error("unknown error code `{0}`: valid codes are E001 to E068 and E071 to E072 (for example `kbz-install explain E002`)")]
pub struct UnknownCode(pub String);

impl HasCode for UnknownCode {
    fn code(&self) -> Code {
        Code::E010
    }
}

/// Looks up a code given as text (`E002`, `e2`, `2`) and renders its full explanation.
pub fn explain(code: &str) -> Result<String, UnknownCode> {
    let entry = parse_code(code)
        .and_then(lookup)
        .ok_or_else(|| UnknownCode(code.to_string()))?;
    Ok(entry.render())
}

/// Parses `E002`, `e002`, `E2` or `2` into a catalogue code.
pub fn parse_code(text: &str) -> Option<Code> {
    let t = text.trim();
    let digits = t.strip_prefix(['E', 'e']).unwrap_or(t);
    let n: u16 = digits.parse().ok()?;
    Code::from_number(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_accepts_canonical_and_short_forms() {
        let full = explain("E002").expect("E002 is in the catalogue");
        assert!(
            full.starts_with("E002 (general): Inventory line malformed"),
            "{full}"
        );
        assert!(full.contains("How to fix it:"), "{full}");
        assert!(full.contains("  1. ") && full.contains("  2. "), "{full}");
        assert!(
            full.contains("kbz-install validate --inventory servers.tsv"),
            "{full}"
        );
        assert_eq!(explain("e2").expect("e2 parses"), full);
        assert_eq!(explain(" E002 ").expect("spaces are trimmed"), full);
        assert_eq!(explain("2").expect("bare number"), full);
    }

    #[test]
    fn explain_rejects_unknown_codes_listing_the_range() {
        for bad in ["E999", "foo", "E000", "E069", "", "E-1"] {
            let err = explain(bad).expect_err(bad);
            assert_eq!(err.0, bad);
            assert_eq!(err.code(), Code::E010);
            let msg = err.to_string();
            assert!(msg.contains("E001 to E068"), "{msg}");
            assert!(msg.contains(&format!("`{bad}`")), "{msg}");
        }
    }

    #[test]
    fn unknown_code_becomes_a_diagnostic() {
        let d = UnknownCode("E999".into()).to_diagnostic();
        assert_eq!(d.code, Code::E010);
        assert!(d
            .render_plain()
            .starts_with("E010: unknown error code `E999`"));
    }
}
