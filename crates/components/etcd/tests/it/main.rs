//! kbz-etcd integration tests, one binary: snapshots of every rendered file (`render`),
//! engine runs on fake hosts (`engine`) and a real etcd on loopback with the rendered TLS
//! settings (`loopback`).

mod engine;
mod loopback;
mod render;
