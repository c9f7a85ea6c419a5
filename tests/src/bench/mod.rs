//! `postern-bench`: throughput, latency and memory of relay-in and relay-out,
//! measured with a built-in load client against a built-in sink, all on
//! loopback. BENCHMARKS.md at the repository root has the figures and the
//! commands; `tests/tests/e2e/bench_smoke.rs` keeps the tool working.
//!
//! Every run is bounded in count (`--messages`, `--connections`) and in time
//! (`--duration`, never more than [`cli::MAX_PHASE`] per phase), and every
//! address used is on 127.0.0.0/8.

pub mod cli;
pub mod client;
pub mod daemon;
pub mod eod;
pub mod message;
pub mod procfs;
pub mod queue_root;
pub mod reply;
pub mod report;
pub mod scenario;
pub mod sink;
pub mod smtp_sink;
pub mod stats;
pub mod tls;
