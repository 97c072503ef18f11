//! kbz-postgres (in progress).
