//! kbz-haproxy integration tests, one binary: rendered files and `haproxy -c` (`render`) and
//! engine runs on fake hosts (`engine`).

mod engine;
mod render;
