//! `NotifyError`: why a notification target could not be built or a message not delivered.
//!
//! Every message here is shown to users and written to logs, so none of them may contain a
//! secret: URL parsing errors describe the part that is wrong without echoing it, and
//! delivery errors pass through the target's redactor before they are built.

use kbz_errors::{Code, Diagnostic, HasCode};

/// A notification failure. Configuration problems (`BadUrl`, `UnknownOption`,
/// `DuplicateName`) are E008, a missing secret is E052, and every delivery failure (HTTP or
/// SMTP) is E020.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The target's URL cannot be used; `reason` says which part and what form is expected.
    #[error("notify target `{target}`: {reason}")]
    BadUrl {
        /// Target name.
        target: String,
        /// What is wrong (never the secret part of the URL itself).
        reason: String,
    },
    /// An `options` key the target's channel does not know (a typo must not be ignored).
    #[error("notify target `{target}`: unknown option `{option}` for {channel} (valid: {valid})")]
    UnknownOption {
        /// Target name.
        target: String,
        /// The unknown key.
        option: String,
        /// The channel kind (`slack`, `email`, ...).
        channel: &'static str,
        /// The keys this channel accepts.
        valid: String,
    },
    /// Two targets share a name, so `notify test` output would be ambiguous.
    #[error("notify target names must be unique: `{0}` is used twice")]
    DuplicateName(String),
    /// A `{secret:NAME}` placeholder names a secret the secrets file does not hold.
    #[error("notify target `{target}`: secret `{name}` is not in the secrets file")]
    MissingSecret {
        /// Target name.
        target: String,
        /// The secret's name.
        name: String,
    },
    /// The endpoint answered with an error status.
    #[error("HTTP {status}{detail}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// `: ` plus an excerpt of the response body (redacted), or empty.
        detail: String,
    },
    /// The request could not be sent or its answer not read (connection refused, TLS, DNS).
    #[error("request failed: {0}")]
    Transport(String),
    /// No answer within the target's timeout.
    #[error("timed out after {0}s (target timeout_secs)")]
    Timeout(u64),
    /// The SMTP server refused the message or the connection failed.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// The HTTP client could not be created (TLS backend initialisation).
    #[error("cannot create the HTTP client: {0}")]
    Client(String),
}

impl HasCode for NotifyError {
    fn code(&self) -> Code {
        match self {
            NotifyError::BadUrl { .. }
            | NotifyError::UnknownOption { .. }
            | NotifyError::DuplicateName(_) => Code::E008,
            NotifyError::MissingSecret { .. } => Code::E052,
            NotifyError::Status { .. }
            | NotifyError::Transport(_)
            | NotifyError::Timeout(_)
            | NotifyError::Smtp(_)
            | NotifyError::Client(_) => Code::E020,
        }
    }

    fn to_diagnostic(&self) -> Diagnostic {
        let d = Diagnostic::new(self.code(), self.to_string());
        match self {
            NotifyError::MissingSecret { name, .. } => d.hint(format!(
                "add `{name} = \"...\"` to the secrets file (.kbz/secrets.toml, mode 0600), \
                 or fix the placeholder name in kbz.toml"
            )),
            NotifyError::BadUrl { .. } | NotifyError::UnknownOption { .. } => {
                d.hint("see docs/notifications.md for the accepted URL forms and options")
            }
            NotifyError::DuplicateName(_) => d.hint("give every [[notify]] target its own name"),
            _ => d.hint("check the target by hand with `kbz-install notify test`"),
        }
    }
}

impl NotifyError {
    /// Whether the failure is in the configuration (E008/E052) rather than in a delivery.
    pub fn is_config(&self) -> bool {
        matches!(self.code(), Code::E008 | Code::E052)
    }

    /// The one-line form stored in [`kbz_core::notifier::Delivery::result`]:
    /// `E020: HTTP 500: ...`.
    pub fn to_delivery_reason(&self) -> String {
        format!("{}: {}", self.code(), self)
    }
}
