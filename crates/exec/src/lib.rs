//! kbz-exec: executors behind `kbz_core::Executor` (SSH over ssh2, local) and the download
//! cache. Knows nothing about components or the CLI. The in-memory test host lives in
//! `kbz-testkit`.

pub mod cache;
mod invoke;
pub mod local;
pub mod ssh;

pub use cache::DownloadCache;
pub use local::LocalExecutor;
pub use ssh::{JumpHost, SshConnector, SshExecutor, SshOptions, Tunnel};
