//! relay-out as a library: the daemon's parts, so that the binary stays a
//! thin command line. The queue itself is the `spool` crate.

pub mod acl;
pub mod args;
pub use dsn as bounce;
pub mod check;
pub mod cli;
pub mod config;
pub mod courier;
pub mod daemon;
pub mod https_client;
#[cfg(test)]
mod key_coverage;
pub mod mta_sts;
pub mod policy;
pub mod queue;
pub mod requiretls;
pub mod submission;
pub mod tlsrpt;
