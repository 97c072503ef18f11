//! kbz-postgres integration tests, one binary: rendered files and Patroni's validator
//! (`render`) and engine runs on fake hosts (`engine`).

mod engine;
mod render;
