//! relay-out as a library: the daemon's parts, so that the binary stays a
//! thin command line and the fuzz targets can reach the queue's readers.

pub mod acl;
pub mod bounce;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod policy;
pub mod queue;
pub mod schedule;
pub mod submission;
