//! Postern's SMTP runtime, shared by `relay-in` and `relay-out`.
//!
//! The protocol itself (parsing, replies, the session state machine) is the
//! sans-IO `smtp-protocol` crate; this crate is everything around it that
//! touches the world. [`server`] is the thin tokio driver that puts a
//! [`smtp_protocol::session::Session`] on a socket and carries out its
//! actions: it asks the binary's [`policy`], gives the session the date and
//! random tokens it asks for, and writes the log lines. [`client`] is the
//! SMTP client both relays send with; [`tls`], [`dns`] and [`config`] are
//! the pieces they need from the outside world, and [`id`], [`message`],
//! [`metrics`], [`logging`] and [`app`] the daemon's plumbing.

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
