//! Postern's SMTP engine, shared by `relay-in` and `relay-out`.
//!
//! The protocol is sans-IO: [`command`], [`address`], [`data`], [`reply`] and
//! [`session`] are pure types and functions with no sockets, so they can be
//! unit-tested and fuzzed byte by byte. [`server`] is the thin tokio driver
//! that puts a [`session::Session`] on a socket; [`tls`], [`dns`] and
//! [`config`] are the pieces it needs from the outside world.

pub mod app;
pub mod client;
pub mod config;
pub mod dns;
pub mod id;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod stream;
pub mod tls;
