//! kbz-etcd (in progress).
