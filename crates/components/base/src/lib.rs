//! base (in progress).
