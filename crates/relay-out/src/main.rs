// Not used by the daemon yet; the queue runner will build notices and
// schedule retries with them.
#[allow(dead_code)]
mod bounce;
mod config;
#[allow(dead_code)]
mod schedule;

fn main() {}
