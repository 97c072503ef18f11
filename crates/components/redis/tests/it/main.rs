//! kbz-redis integration tests, one binary: snapshots of every rendered file, FakeHost engine
//! runs (install, converged re-run, re-run after a failover, uninstall, failures), and real
//! daemons on loopback (bootstrap, a real failover, kbz following the new master).

mod common;
mod engine;
mod loopback;
mod render;
