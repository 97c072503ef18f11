//! kbz-redis (in progress).
