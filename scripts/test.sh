#!/usr/bin/env bash
# The whole test suite: Debian packages the tests use, formatting, lints,
# every test of the workspace (unit, conformance, end-to-end with real
# clients). Needs root for the end-to-end tests (podman, dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n=== %s (%ss)\n' "$1" "$SECONDS"; }

stage "install test dependencies"
scripts/install-test-deps.sh

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests: run them first, so that nextest's
  # summary is the last word of the run.
  stage "doctests"
  cargo test --workspace --doc
  stage "cargo nextest run"
  cargo nextest run --workspace --no-fail-fast
else
  stage "cargo test"
  cargo test --workspace --no-fail-fast
fi
