#!/usr/bin/env bash
# The fuzz targets (cargo fuzz, libFuzzer, nightly Rust): build, fuzz, replay
# the regressions, remake the seeds. `make fuzz` and `make fuzz-ci` call it;
# see fuzz/README.md.
#
#   fuzz/run.sh build                 build every target
#   fuzz/run.sh fuzz [TARGET…]        fuzz each (default: all) for $FUZZ_SECONDS
#   fuzz/run.sh regressions           run every input of fuzz/regressions/T/ once through T
#   fuzz/run.sh seeds                 remake the seed corpora (capture.py, from_tests.py)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(zmtp_null zmtp_curve curve_sealed wire_decode magic_args sql_lex sql_url)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
PYTHON=${PYTHON:-.venv/bin/python}
CARGO_FUZZ=(cargo +nightly fuzz)
CARGO_FUZZ_VERSION=0.13.2
# Optimized, with debug assertions and overflow checks, under AddressSanitizer
# (its default): `run` must be given the same flags as `build`, or it rebuilds.
BUILD_FLAGS=(-O -a)
# No leak checks: the async runtime keeps memory one run allocates for the
# next, so libFuzzer would scan the heap after every run (a fiftyfold
# slowdown) to find nothing; and no single input may take 10 s.
LIBFUZZER_FLAGS=(-detect_leaks=0 -timeout=10)

tools() {
    if ! rustup toolchain list | grep -q '^nightly'; then
        rustup toolchain install nightly --profile minimal
    fi
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi
}

build() {
    tools
    "${CARGO_FUZZ[@]}" build "${BUILD_FLAGS[@]}"
}

# Each target from its seeds (read only) and what earlier local runs found
# (fuzz/target/corpus/T, where new inputs go); crashes land in fuzz/artifacts/T/.
fuzz() {
    local targets=("$@") failed=() t log
    [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
    build
    mkdir -p fuzz/target/logs
    for t in "${targets[@]}"; do
        echo "==> fuzzing $t for ${FUZZ_SECONDS} s"
        mkdir -p "fuzz/target/corpus/$t"
        log="fuzz/target/logs/$t.log"
        touch "fuzz/target/logs/$t.start"
        if ! "${CARGO_FUZZ[@]}" run "${BUILD_FLAGS[@]}" "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
            "${LIBFUZZER_FLAGS[@]}" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
            failed+=("$t")
            grep -E -A30 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" | head -60 || true
            tail -5 "$log"
            show_artifacts "$t"
        fi
    done
    echo "==> coverage and speed (last status line of each run)"
    for t in "${targets[@]}"; do
        printf '%-14s %s\n' "$t" \
            "$(grep -E '^#[0-9]+' "fuzz/target/logs/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+|exec/s: [0-9]+' | tr '\n' ' ')"
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "==> crashes in: ${failed[*]} (inputs in fuzz/artifacts/; logs in fuzz/target/logs/)" >&2
        echo "    minimize one: cargo +nightly fuzz tmin ${BUILD_FLAGS[*]} TARGET fuzz/artifacts/TARGET/crash-…" >&2
        echo "    then keep it in fuzz/regressions/TARGET/ (see fuzz/README.md)" >&2
        return 1
    fi
}

# The inputs a failed run left, in base64: a CI log is all there is to
# reproduce one from (`base64 -d > crash` then `cargo +nightly fuzz run`).
show_artifacts() {
    local f
    [ -d "fuzz/artifacts/$1" ] || return 0
    find "fuzz/artifacts/$1" -maxdepth 1 -type f -newer "fuzz/target/logs/$1.start" -print |
        while read -r f; do
            echo "==> $f ($(wc -c <"$f") bytes), base64:"
            head -c 65536 "$f" | base64 -w 0
            echo
        done
}

# Every kept crash, once through its target: each must pass now.
regressions() {
    local dir t n
    build
    for dir in fuzz/regressions/*/; do
        [ -d "$dir" ] || continue # none yet: the glob stays as written
        t=$(basename "$dir")
        n=$(find "$dir" -maxdepth 1 -type f | wc -l)
        [ "$n" -gt 0 ] || continue
        echo "==> replaying $n input(s) of $dir"
        "${CARGO_FUZZ[@]}" run "${BUILD_FLAGS[@]}" "$t" "$dir" -- "${LIBFUZZER_FLAGS[@]}" -runs=0
    done
}

seeds() {
    build
    "$PYTHON" fuzz/seeds/capture.py
    "$PYTHON" fuzz/seeds/from_tests.py
}

case "${1:-}" in
    build) build ;;
    fuzz) shift; fuzz "$@" ;;
    regressions) regressions ;;
    seeds) seeds ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
