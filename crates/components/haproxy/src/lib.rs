//! kbz-haproxy (in progress).
