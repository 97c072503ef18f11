//! The `Cache` trait: pinned artifacts (release tarballs, binaries, wheels) fetched once,
//! verified against their sha256, and reused. The implementation lives in `kbz-exec`
//! (`DownloadCache`); the engine calls it when it must push a [`crate::Resource::Artifact`].

use async_trait::async_trait;
use std::path::PathBuf;

use crate::artifact::ArtifactPin;

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
    /// The bytes did not match the pin (`url` names the source).
    #[error("checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the file was not used")]
    Checksum {
        /// URL.
        url: String,
        /// Pinned.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The pin cannot be fetched as written (bad sha256, bad source) or a local tool
    /// (pip) failed.
    #[error("artifact {name}: {reason}")]
    Source {
        /// Artifact name.
        name: String,
        /// Detail.
        reason: String,
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
            CacheError::Source { .. } => kbz_errors::Code::E020,
        }
    }
}

/// A verified local artifact store.
#[async_trait]
pub trait Cache: Send + Sync {
    /// Returns a local path holding the pinned bytes: from the cache when a verified copy is
    /// there, else fetched from the pin's source and verified first (a mismatch is
    /// [`CacheError::Checksum`], E030, and nothing is kept).
    async fn fetch(&self, pin: &ArtifactPin) -> Result<PathBuf, CacheError>;
}
