//! kbz-redis integration tests: one binary (snapshots of every rendered file, FakeHost engine
//! runs, and real daemons on loopback).

mod loopback;
