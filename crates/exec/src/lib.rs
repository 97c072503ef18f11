//! kbz-exec: executors behind `kbz_core::Executor` (SSH over ssh2, local, an in-memory fake
//! host for engine tests) and the download cache. Knows nothing about components or the CLI.

pub mod fake;


