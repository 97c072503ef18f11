//! kbz-keepalived integration tests, one binary: rendered files, `keepalived -t` and the
//! `chk_peers` script in a network namespace (`render`), and engine runs on fake hosts
//! (`engine`).

mod engine;
mod render;
