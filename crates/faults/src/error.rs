//! `FaultError`: why a fault, the workload or a measurement could not run.

use kbz_errors::{Code, HasCode};
use kbz_redis::client::ClientError;

/// Why a run of a scenario could not be carried out (a measured loss is not an error: it is
/// a figure in the [`crate::RunReport`]).
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A host could not be reached or a command on it could not run.
    #[error(transparent)]
    Exec(#[from] kbz_core::ExecError),
    /// A fault or heal command ran but failed.
    #[error("{what} on {host} failed: {reason}")]
    Command {
        /// Host (or `controller` for a local command).
        host: String,
        /// What was attempted.
        what: String,
        /// Its output.
        reason: String,
    },
    /// The cluster did not reach the state a step waits for.
    #[error("{what}: not reached within {secs}s ({last})")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The budget.
        secs: u64,
        /// The last observation.
        last: String,
    },
    /// PostgreSQL refused or failed a statement of the harness (not of the workload, whose
    /// failures are expected during a fault and counted).
    #[error("PostgreSQL at {addr}: {reason}")]
    Postgres {
        /// Address.
        addr: String,
        /// Detail.
        reason: String,
    },
    /// Redis or a Sentinel refused or failed a request of the harness (the workload's own
    /// failures during a fault are counted, not raised).
    #[error("Redis at {addr}: {reason}")]
    Redis {
        /// Address.
        addr: String,
        /// Detail.
        reason: String,
    },
    /// MariaDB refused or failed a statement of the harness (the scratch table, a status
    /// query), not of the workload.
    #[error("MariaDB at {addr}: {reason}")]
    Mariadb {
        /// Address.
        addr: String,
        /// Detail.
        reason: String,
    },
    /// RabbitMQ refused or failed a request of the harness (connect, declare, read-back),
    /// not of the workload.
    #[error("RabbitMQ at {addr}: {reason}")]
    Rabbitmq {
        /// Address.
        addr: String,
        /// Detail.
        reason: String,
    },
    /// The Kubernetes API refused or failed a request of the harness (credentials, the
    /// first probe), not of the workload.
    #[error("the Kubernetes API at {addr}: {reason}")]
    Kubernetes {
        /// Address.
        addr: String,
        /// Detail.
        reason: String,
    },
    /// The scenario cannot run on this fleet (no such role, too few members, no power
    /// command for a power cut).
    #[error("scenario {scenario}: {reason}")]
    Unsupported {
        /// Scenario name.
        scenario: String,
        /// Why.
        reason: String,
    },
}

impl HasCode for FaultError {
    fn code(&self) -> Code {
        match self {
            FaultError::Exec(e) => e.code(),
            FaultError::Command { .. } => Code::E021,
            FaultError::Timeout { .. } => Code::E031,
            FaultError::Postgres { .. }
            | FaultError::Redis { .. }
            | FaultError::Mariadb { .. }
            | FaultError::Rabbitmq { .. }
            | FaultError::Kubernetes { .. } => Code::E040,
            FaultError::Unsupported { .. } => Code::E010,
        }
    }
}

impl From<ClientError> for FaultError {
    fn from(e: ClientError) -> FaultError {
        FaultError::Redis {
            addr: e.addr,
            reason: e.reason,
        }
    }
}
