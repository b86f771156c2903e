#!/usr/bin/env bash
# Runs the CEL conformance harness and renders docs/cel-conformance.md from its tallies.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --locked -q -p policy-core --all-features --test cel_conformance
python3 scripts/cel-conformance/report.py
