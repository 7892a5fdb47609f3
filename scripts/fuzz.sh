#!/usr/bin/env bash
# Runs the mutation fuzzer (tests/integration/fuzz.rs) for as long as asked:
#   scripts/fuzz.sh [SECONDS] [SEED]       e.g. scripts/fuzz.sh 3600 42
# Failing mutants land in target/fuzz-failures/ (replay: portcullis rewrite < FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
seed=${2:-$RANDOM}
bash .ci/fetch-corpus
echo "fuzzing for ${seconds}s with seed ${seed}"
FUZZ_SECONDS=$seconds FUZZ_SEED=$seed cargo test --release --test integration fuzz:: -- --nocapture
