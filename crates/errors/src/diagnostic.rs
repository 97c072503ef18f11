//! `Diagnostic`: one user-visible failure with its code, message, location, host and fix,
//! rendered as a framed box (terminal), a plain line (logs) or JSON (tools).

use serde::Serialize;
use std::fmt;

use crate::{lookup, Code};

/// Where in a user's file a problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line number, when the problem is on one line.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line),
            None => write!(f, "{}", self.file),
        }
    }
}

/// One failure as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Catalogue code (`E002`).
    pub code: Code,
    /// What went wrong, specifically (never contains a secret).
    pub message: String,
    /// File and line, for problems in user input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The host the failure happened on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A fix specific to this failure; the catalogue's general solutions follow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with a code and message only.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            location: None,
            host: None,
            hint: None,
        }
    }

    /// Adds `file:line`.
    pub fn at(mut self, file: impl Into<String>, line: Option<usize>) -> Self {
        self.location = Some(Location {
            file: file.into(),
            line,
        });
        self
    }

    /// Adds the host the failure happened on.
    pub fn on_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Adds a specific fix.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// One line for logs: `E002 servers.tsv:4 [db1]: message (fix: ...)`.
    pub fn render_plain(&self) -> String {
        let mut out = format!("{}", self.code);
        if let Some(loc) = &self.location {
            out.push_str(&format!(" {loc}"));
        }
        if let Some(host) = &self.host {
            out.push_str(&format!(" [{host}]"));
        }
        out.push_str(": ");
        out.push_str(&self.message);
        if let Some(hint) = &self.hint {
            out.push_str(&format!(" (fix: {hint})"));
        }
        out
    }

    /// JSON object for `--json` output and JSON log lines.
    pub fn render_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "title".into(),
                serde_json::Value::String(lookup(self.code).map(|e| e.title).unwrap_or("").into()),
            );
        }
        v
    }

    /// A framed box for terminals: code and title, location, message, fix, and where to read more.
    pub fn render_box(&self) -> String {
        let title = lookup(self.code).map(|e| e.title).unwrap_or("");
        let mut lines = vec![format!("error[{}]: {}", self.code, title)];
        if let Some(loc) = &self.location {
            lines.push(format!("  at {loc}"));
        }
        if let Some(host) = &self.host {
            lines.push(format!("  on host {host}"));
        }
        lines.push(String::new());
        lines.extend(wrap(&self.message, 76));
        if let Some(hint) = &self.hint {
            lines.push(String::new());
            lines.extend(wrap(&format!("fix: {hint}"), 76));
        }
        lines.push(String::new());
        lines.push(format!("more: kbz-install explain {}", self.code));
        let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let mut out = format!("┌{}┐\n", "─".repeat(width + 2));
        for l in &lines {
            let pad = width - l.chars().count();
            out.push_str(&format!("│ {l}{} │\n", " ".repeat(pad)));
        }
        out.push_str(&format!("└{}┘", "─".repeat(width + 2)));
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_plain())
    }
}

impl std::error::Error for Diagnostic {}

/// Greedy word wrap; long words stay whole.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                out.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push(line);
    }
    out
}

/// How many diagnostics of one code [`summarize`] keeps by default.
pub const MAX_PER_CODE: usize = 20;

/// Keeps the first `max_per_code` diagnostics of each code, in their order, and replaces the
/// rest of each code by one diagnostic saying how many more there are (and the file of the
/// first one left out), so a file with thousands of bad lines gives a readable report.
pub fn summarize(ds: Vec<Diagnostic>, max_per_code: usize) -> Vec<Diagnostic> {
    let mut seen: std::collections::BTreeMap<Code, usize> = std::collections::BTreeMap::new();
    let mut kept = Vec::new();
    let mut first_left: std::collections::BTreeMap<Code, Diagnostic> =
        std::collections::BTreeMap::new();
    for d in ds {
        let n = seen.entry(d.code).or_default();
        *n += 1;
        if *n <= max_per_code {
            kept.push(d);
        } else {
            first_left.entry(d.code).or_insert(d);
        }
    }
    for (code, first) in first_left {
        let more = seen[&code] - max_per_code;
        let mut d = Diagnostic::new(
            code,
            format!(
                "... and {more} more {code} problem(s) like the above, not shown (the first \
                 of them: {})",
                first.message
            ),
        );
        d.location = first.location.map(|l| Location {
            file: l.file,
            line: l.line,
        });
        kept.push(d);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_rendering_has_code_location_host_and_fix() {
        let d = Diagnostic::new(Code::E006, "unknown role `postgress`")
            .at("servers.tsv", Some(4))
            .on_host("db1")
            .hint("did you mean `postgres`?");
        assert_eq!(
            d.render_plain(),
            "E006 servers.tsv:4 [db1]: unknown role `postgress` (fix: did you mean `postgres`?)"
        );
    }

    #[test]
    fn box_is_rectangular() {
        let d = Diagnostic::new(Code::E001, "x".repeat(200)).at("a.tsv", None);
        let b = d.render_box();
        let widths: Vec<usize> = b.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{b}");
        assert!(b.contains("explain E001"));
    }

    #[test]
    fn json_carries_code_and_title() {
        let d = Diagnostic::new(Code::E004, "duplicate").at("s.tsv", Some(2));
        let j = d.render_json();
        assert_eq!(j["code"], Code::E004.to_string());
        assert_eq!(j["location"]["line"], 2);
        assert!(!j["title"].as_str().unwrap_or("").is_empty());
    }

    #[test]
    fn repeated_codes_are_summarized_after_the_cap() {
        let mut ds: Vec<Diagnostic> = (1..=500)
            .map(|i| {
                Diagnostic::new(Code::E005, format!("bad value {i}")).at("servers.tsv", Some(i))
            })
            .collect();
        ds.insert(3, Diagnostic::new(Code::E004, "duplicate"));
        let out = summarize(ds, 20);
        assert_eq!(out.len(), 22);
        assert_eq!(out.iter().filter(|d| d.code == Code::E004).count(), 1);
        let last = out.last().expect("summary");
        assert_eq!(last.code, Code::E005);
        assert!(
            last.message.starts_with("... and 480 more E005 problem(s)"),
            "{}",
            last.message
        );
        assert!(last.message.contains("bad value 21"), "{}", last.message);
        assert_eq!(last.location.as_ref().and_then(|l| l.line), Some(21));
        // Under the cap nothing changes.
        let few = vec![
            Diagnostic::new(Code::E005, "a"),
            Diagnostic::new(Code::E005, "b"),
        ];
        assert_eq!(summarize(few.clone(), 20), few);
    }
}
