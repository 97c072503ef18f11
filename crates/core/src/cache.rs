//! The `Cache` trait: artifacts (release tarballs, binaries) fetched once, verified against a
//! pinned sha256, and reused. The implementation lives in `kbz-exec`.

use async_trait::async_trait;
use std::path::PathBuf;

/// Why an artifact could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The download failed.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// URL.
        url: String,
        /// Detail.
        reason: String,
    },
    /// The bytes did not match the pin.
    #[error("checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the file was not used")]
    Checksum {
        /// URL.
        url: String,
        /// Pinned.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// Local storage failed.
    #[error("cache directory {path}: {reason}")]
    Io {
        /// Path.
        path: String,
        /// Detail.
        reason: String,
    },
}

impl kbz_errors::HasCode for CacheError {
    fn code(&self) -> kbz_errors::Code {
        match self {
            CacheError::Download { .. } => kbz_errors::Code::E020,
            CacheError::Checksum { .. } => kbz_errors::Code::E030,
            CacheError::Io { .. } => kbz_errors::Code::E028,
        }
    }
}

/// A verified local artifact store.
#[async_trait]
pub trait Cache: Send + Sync {
    /// Returns a local path holding the bytes of `url`, whose sha256 is `sha256`.
    async fn fetch(&self, url: &str, sha256: &str) -> Result<PathBuf, CacheError>;
}
