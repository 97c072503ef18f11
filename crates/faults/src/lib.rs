//! kbz-faults: real faults against a fleet and the proof of what they cost. Faults: a
//! partition of one host from its peers by nftables rules that remove themselves, a SIGKILL
//! of a unit (held down or not), a power cut by operator commands. Workload: writers through
//! the service's VIP, one [`ServiceTarget`] per service (PostgreSQL: unique ids inserted in
//! autocommit; Redis: unique keys SET under a scratch prefix; MariaDB Galera: unique ids
//! inserted through its one-writer VIP; RabbitMQ: unique ids published with publisher
//! confirms to a scratch quorum queue). Checker: every acknowledged
//! write read back through the VIP and on every member. Measurements per run ([`RunReport`], JSON): lost and unexpected rows,
//! seconds to a new leader as Patroni reports it, when writes resumed after the fault, the
//! longest write gap, seconds until the victim streams again, whether two
//! primaries answered at once.
//!
//! The library never prints and reads no environment: binaries (`cargo xtask failover`,
//! `kbz-failover`) build a [`Target`] from their inputs, call [`run_once`] and present the
//! reports. Service knowledge (who leads, what streaming means) comes from the components.

mod batch;
pub mod budget;
mod check;
pub mod cleanup;
mod error;
pub mod fault;
pub mod k8s;
pub mod mariadb;
pub mod observe;
pub mod postgres;
pub mod rabbitmq;
pub mod redis;
mod run;
mod scenario;
pub mod service;
pub mod workload;

pub use batch::{run_all, Batch, Progress};
pub use budget::{evaluate, Breach, Budget};
pub use check::{acks_by_server, longest_gap, lost_ids, verdict, Verdict};
pub use error::FaultError;
pub use fault::{Fault, HostCommands};
pub use k8s::{K8sService, K8sTarget};
pub use mariadb::{GaleraService, GaleraTarget};
pub use observe::Member;
pub use postgres::PgTarget;
pub use rabbitmq::{RabbitService, RabbitTarget};
pub use redis::RedisTarget;
pub use run::{run_once, wait_healthy};
pub use scenario::{
    RunReport, Scenario, Service, Summary, Target, Timing, VictimRole, MIN_GALERA_NODES,
    MIN_K8S_MASTERS,
};
pub use service::{PgService, RedisService, ServiceTarget};
pub use workload::{Tally, Workload, WriteError, Writer};
