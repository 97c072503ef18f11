//! kbz-keepalived (in progress).
