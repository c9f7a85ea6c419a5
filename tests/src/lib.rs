//! Test support for the end-to-end tests in `tests/tests/e2e/`: the real
//! binaries as processes, a raw SMTP client, scripted dialogs, test
//! certificates, and a DNS server on loopback.
//!
//! Every address used here is on 127.0.0.0/8 or ::1; the README's test
//! command runs the suite in a network namespace holding only loopback.

pub mod backend;
pub mod bench;
pub mod certs;
pub mod dialog;
pub mod dns;
pub mod dnssec;
pub mod haproxy;
pub mod journal;
pub mod logline;
pub mod metrics;
pub mod nginx;
pub mod outbound;
pub mod postfix;
pub mod process;
pub mod relay_in;
pub mod sasl;
pub mod scenario;
pub mod smtp;
pub mod tls_mx;
