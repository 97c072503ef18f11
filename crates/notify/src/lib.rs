//! notify (in progress).
