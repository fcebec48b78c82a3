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
# The expression engine's differential test compares it with GitHub's own implementation, the
# npm package @actions/expressions; it runs when the package is installed. Best effort: a
# machine without npm runs every other test.
if [ -z "${BATON_ACTIONS_EXPRESSIONS_DIR:-}" ] && command -v npm >/dev/null 2>&1; then
    dir="$PWD/target/npm-actions-expressions"
    if [ -d "$dir/node_modules/@actions/expressions" ] || npm install --silent --no-audit --no-fund --prefix "$dir" @actions/expressions >/dev/null 2>&1; then
        export BATON_ACTIONS_EXPRESSIONS_DIR="$dir"
    else
        echo "note: could not install @actions/expressions from npm; the differential expression test is skipped" >&2
    fi
fi
# The PostgreSQL store runs the same conformance suite as SQLite: start a private cluster
# (installing PostgreSQL when missing). Under CI=true a database that cannot be started fails
# the run; elsewhere its tests are skipped with a note.
if [ -z "${BATON_TEST_POSTGRES_URL:-}" ]; then
    pg_dir="${BATON_TEST_POSTGRES_DIR:-/tmp/baton-test-postgres}"
    if url=$(scripts/postgres.sh "$pg_dir" "${BATON_TEST_POSTGRES_PORT:-55432}" scratch); then
        export BATON_TEST_POSTGRES_URL="$url"
        # The CA of the cluster's TLS certificate, for the tests of TLS to the database.
        export BATON_TEST_POSTGRES_CA="$pg_dir/tls/ca.crt"
    elif [ "${CI:-}" = "true" ]; then
        echo "error: PostgreSQL could not be started, and CI=true requires its tests" >&2
        exit 1
    else
        echo "note: PostgreSQL could not be started; its tests are skipped" >&2
    fi
fi
exec cargo xtask ci
