//! Postern's SMTP protocol, sans-IO.
//!
//! This crate exists so that everything that reads or writes SMTP is pure:
//! bytes and values in, bytes and values out, with no sockets, no clocks,
//! no randomness, no logging and no async runtime. What the protocol needs
//! from the world (a date, a random token, a policy's verdict) is asked for
//! and handed in by the caller. So every parser can be unit-tested byte by
//! byte and fuzzed, every reply compared to the octet, and the crate's
//! dependency tree stays small (`cargo tree -p smtp-protocol -e normal`).
//! The tokio drivers that put it on sockets are in `smtp-core`.
//!
//! Parsing what a peer sends:
//! - [`command`]: one client command line into a [`command::Command`];
//! - [`address`]: envelope paths and mailboxes (RFC 5321, RFC 6531);
//! - [`data`]: the DATA phase, decoding ([`data::DataDecoder`]) and
//!   dot-stuffing ([`data::dot_stuff`]);
//! - [`reply_parser`]: a server's replies, incrementally, with limits
//!   against hostile servers;
//! - [`sasl`]: SMTP AUTH exchanges and checking credentials;
//! - [`dsn_params`]: the DSN parameters of MAIL and RCPT (RFC 3461).
//!
//! Generating what we send:
//! - [`reply`]: the reply type, formatted and sanitised in one place;
//! - [`xtext`]: the encoding of XCLIENT and DSN parameter values;
//! - [`received`]: our `Received:` header (given the date) and the hop count.
//!
//! And the server's side of a conversation: [`session`], the state machine
//! that turns command lines and DATA octets into replies and
//! [`session::Action`]s (check this sender, stamp this date, deliver this
//! message) for a driver to carry out.

pub mod address;
pub mod command;
pub mod data;
pub mod dsn_params;
pub mod ip_text;
pub mod received;
pub mod reply;
pub mod reply_parser;
pub mod sasl;
pub mod session;
pub mod xtext;
