//! Test support shared by the end-to-end tests.

pub mod dns;
pub mod postfix;
