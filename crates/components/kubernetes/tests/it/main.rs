//! kbz-kubernetes integration tests, one binary: rendered files and manifests with their
//! validators (`render`) and engine runs on fake hosts with a real download cache (`engine`).

mod engine;
mod render;
