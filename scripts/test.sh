#!/usr/bin/env bash
# Sets up, checks formatting, builds with warnings as errors, and runs every test.
# Exits non-zero on any failure. Everything the tests read is in the repository (Tests/Fixtures,
# Tests/Data, Tests/Golden, tutorials/).
set -euo pipefail
cd "$(dirname "$0")/.."

# Open MPI too: the release pass builds the MPI trait and runs the 2-rank tests.
scripts/setup.sh --mpi

echo "== swift format lint" >&2
swift format lint --strict --recursive Package.swift Sources Tests

# BLAS single-threaded: sums are bit-stable from run to run. SkelLab's own kernels give the
# same bits for any thread count; SKELLAB_THREADS fixes both.
export OPENBLAS_NUM_THREADS=1 SKELLAB_THREADS=1

# Each test's wall time goes to a file; the ten slowest are printed at the end.
times=$(mktemp)
export SKELLAB_TEST_TIMES="$times"
slowest() {
  local status=$?
  echo "== the ten slowest tests (seconds, pass)" >&2
  sort -rn "$times" | head -10 >&2 || true
  rm -f "$times"
  exit "$status"
}
trap slowest EXIT

# Debug first: the unit, fixture and golden tests with bounds checks on the same kernels. Then
# release: everything, including the heavy suites (tutorial replays, fuzzing, end-to-end
# protocol, fit and command-line runs), on the optimised kernels users run.
echo "== swift build (debug)" >&2
swift build --build-tests -Xswiftc -warnings-as-errors
echo "== swift test (debug)" >&2
SKELLAB_TEST_PASS=debug swift test --skip-build --disable-xctest

# The release build has the MPI trait (the debug build has not: both configurations build), and
# its pass runs the MPI tests under mpirun with 2 ranks (SKELLAB_TEST_MPI makes them required).
echo "== swift build (release, --traits MPI)" >&2
swift build -c release --traits MPI --build-tests -Xswiftc -warnings-as-errors
echo "== swift test (release, MPI tests with 2 ranks)" >&2
SKELLAB_TEST_MPI=1 swift test -c release --traits MPI --skip-build --disable-xctest

# CI also builds and tests the portable release build (no -target-cpu: SKELLAB_TARGET_CPU=generic),
# in its own folder so that the manifest is evaluated afresh.
if [ -n "${CI:-}" ] || [ -n "${SKELLAB_TEST_GENERIC:-}" ]; then
  echo "== swift build (release, SKELLAB_TARGET_CPU=generic)" >&2
  SKELLAB_TARGET_CPU=generic swift build -c release --scratch-path .build-generic --build-tests \
    -Xswiftc -warnings-as-errors
  echo "== swift test (release, generic)" >&2
  SKELLAB_TARGET_CPU=generic swift test -c release --scratch-path .build-generic --skip-build \
    --disable-xctest
fi
