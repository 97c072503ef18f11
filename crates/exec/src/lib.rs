//! kbz-exec: executors behind `kbz_core::Executor` (SSH over ssh2, local, an in-memory fake
//! host for engine tests) and the download cache. Knows nothing about components or the CLI.

pub mod fake;

pub mod cache;
mod invoke;
pub mod local;
pub mod ssh;

pub use cache::DownloadCache;
pub use fake::{FakeConnector, FakeHost};
pub use local::LocalExecutor;
pub use ssh::{JumpHost, SshConnector, SshExecutor, SshOptions};
