//! kbz-faults: real faults against a fleet and the proof of what they cost. Faults: a
//! partition of one host from its peers by nftables rules that remove themselves, a SIGKILL
//! of a unit, a power cut by operator commands. Workload: writers inserting unique ids into
//! PostgreSQL through the VIP. Checker: every acknowledged id read back through the VIP and
//! on every member. Measurements per run ([`RunReport`], JSON): lost and unexpected rows,
//! seconds to a new leader as Patroni reports it, when writes resumed after the fault, the
//! longest write gap, seconds until the victim streams again, whether two
//! primaries answered at once.
//!
//! The library never prints and reads no environment: binaries (`cargo xtask failover`,
//! `kbz-failover`) build a [`Target`] from their inputs, call [`run_once`] and present the
//! reports. Service knowledge (who leads, what streaming means) comes from the components.

pub mod budget;
mod check;
pub mod cleanup;
mod error;
pub mod fault;
pub mod observe;
mod scenario;
pub mod workload;

pub use budget::{evaluate, Breach, Budget};
pub use check::{acks_by_server, longest_gap, verdict, Verdict};
pub use error::FaultError;
pub use fault::{Fault, HostCommands};
pub use observe::Member;
pub use scenario::{
    run_once, wait_healthy, RunReport, Scenario, Summary, Target, Timing, VictimRole,
};
pub use workload::{PgTarget, Tally, Workload};
