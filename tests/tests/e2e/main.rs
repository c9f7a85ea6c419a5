//! Postern's end-to-end suite: every test starts the real `relay-in` and
//! `relay-out` binaries against real peers (Postfix, swaks, a DNS server of
//! the test's own) on loopback.
//!
//! One test binary, one module per area, rather than one binary per file:
//! each integration-test binary links the whole dependency tree again, and
//! twenty-odd of them filled a CI machine's disk (and cost a link each).
//! Run one area with `cargo test -p postern-tests --test e2e relay_out_acl::`.

mod abuse;
mod bench_smoke;
mod demo;
mod deploy;
mod dns_resolver;
mod haproxy;
mod journald;
mod metrics;
mod plugins;
mod postfix_harness;
mod relay_in_backup_crash;
mod relay_in_backup_spool;
mod relay_in_basics;
mod relay_in_early_open;
mod relay_in_forward;
mod relay_in_lifecycle;
mod relay_in_postfix;
mod relay_in_probe;
mod relay_in_reuse;
mod relay_in_spare;
mod relay_out_acl;
mod relay_out_crash;
mod relay_out_dane;
mod relay_out_delivery;
mod relay_out_delivery_log;
mod relay_out_dest_domains;
mod relay_out_dsn;
mod relay_out_missing_headers;
mod relay_out_mta_sts;
mod relay_out_operations;
mod relay_out_postfix;
mod relay_out_requiretls;
mod relay_out_routes;
mod relay_out_session_reuse;
mod relay_out_shaping;
mod relay_out_source_check;
mod relay_out_submission;
mod relay_out_tls;
mod relay_out_tlsrpt;
mod scenarios;
