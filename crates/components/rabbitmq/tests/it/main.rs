//! kbz-rabbitmq integration tests, one binary: snapshots of every rendered file and of the
//! plans, FakeHost engine runs (install, converged re-run, uninstall, failures), the cluster
//! step against a simulated cluster (joins of nodes that started alone), and three real
//! RabbitMQ nodes on loopback formed by the crate's own cluster step.

mod common;
mod engine;
mod loopback;
mod render;
