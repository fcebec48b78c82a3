#!/usr/bin/env bash
# Runs everything CI runs: tidy, cargo fmt --check, clippy -D warnings, the whole test suite.
# Works on a fresh Debian machine with only the Rust toolchain installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (https://rustup.rs), then rerun" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
exec cargo xtask ci
