//! kbz-install (in progress).
fn main() {}
