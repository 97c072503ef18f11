//! kbz-mariadb integration tests, one binary: snapshots and validators of every rendered
//! file, FakeHost engine runs (install, converged re-run, config change, full-cluster
//! recovery, refusals, uninstall), and three real Galera nodes on loopback (bootstrap, a
//! write read on every node, a kill of all three and the automated recovery).

mod common;
mod engine;
mod loopback;
mod render;
