//! kbz-exec: executors behind `kbz_core::Executor` (SSH over ssh2, local) and the download
//! cache. Knows nothing about components or the CLI. The in-memory test host lives in
//! `kbz-testkit`.

pub mod cache;
pub mod cache_files;
mod invoke;
pub mod local;
pub mod ssh;

pub use cache::{DownloadCache, FetchFailed};
pub use local::LocalExecutor;
pub use ssh::{JumpHost, SshConnector, SshExecutor, SshOptions, Tunnel};
