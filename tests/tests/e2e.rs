//! Every end-to-end scenario, one module per file, in one test binary:
//! `cargo nextest run -p strata-tests -E 'test(/^faults::/)'` or
//! `cargo test -p strata-tests --test e2e faults::` runs one file's tests.

mod auth;
mod batches;
mod cli;
mod client_failover;
mod cluster;
mod connections;
mod dev;
mod faults;
mod gossip_key;
mod hints;
mod listeners;
mod nemesis;
mod node_process;
mod operator;
mod operator_reconciler;
mod overload;
mod packaging;
mod regression;
mod repair;
mod restore;
mod sessions;
mod slow_node;
mod tls;
mod tombstones;
mod topology;
