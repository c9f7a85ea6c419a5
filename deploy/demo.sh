#!/usr/bin/env bash
# Installs what Postern needs on a fresh Debian machine, builds it, and runs
# both relays on a loopback demo configuration: one mail goes in through
# relay-in to a private Postfix (standing in for Mailcow, with XCLIENT), and
# one goes out through relay-out to an MX answered by a local DNS server.
# Nothing leaves the machine: every address is on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (it installs Debian packages and starts a private Postfix)" >&2
    exit 1
fi

# Debian packages: a C compiler for ring, Postfix (the demo backend) and swaks.
if ! command -v cc >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q build-essential curl ca-certificates
fi
.ci/install-test-deps

# Rust: Debian's rustc is too old (Postern needs 1.88); use rustup if missing.
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
fi

cargo build --workspace --bins --examples --locked
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
exec "$target_dir/debug/examples/demo"
