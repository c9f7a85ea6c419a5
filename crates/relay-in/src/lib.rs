//! relay-in as a library: only its command line, which the man page
//! generator needs. The daemon's parts stay private to the binary.

pub mod args;
