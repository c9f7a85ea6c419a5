mod config;
// The delivery loop and the `queue` CLI that use the spool are not written yet.
#[allow(dead_code, unused_imports)]
mod queue;

fn main() {}
