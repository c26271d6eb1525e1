#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer and with ThreadSanitizer and runs it; any report
# fails the run. Each sanitizer builds in its own folder (.build-address, .build-thread).
#
#   scripts/sanitize.sh                 both sanitizers, every test
#   scripts/sanitize.sh thread          one sanitizer
#   scripts/sanitize.sh --load          also runs a second copy of the suite at the same time,
#                                       so that the two oversubscribe the cores (preemption in
#                                       the worker pool's hand-offs)
#   scripts/sanitize.sh -- --filter X   arguments after -- go to `swift test`
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

sanitizers=()
load=0
test_arguments=()
while [ $# -gt 0 ]; do
  case "$1" in
    address | thread) sanitizers+=("$1") ;;
    --load) load=1 ;;
    --)
      shift
      test_arguments=("$@")
      break
      ;;
    *)
      echo "sanitize: unknown argument '$1' (address, thread, --load, -- test arguments)" >&2
      exit 2
      ;;
  esac
  shift
done
[ ${#sanitizers[@]} -eq 0 ] && sanitizers=(address thread)

# Threads on: the pool's hand-offs are what ThreadSanitizer should see. Reports end the process
# with a non-zero status instead of scrolling past.
export SKELLAB_THREADS=2 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:second_deadlock_stack=1}"

status=0
for sanitizer in "${sanitizers[@]}"; do
  scratch=".build-$sanitizer"
  export SKELLAB_SANITIZER="$sanitizer"  # tests that bound memory allow for the shadow
  echo "== $sanitizer: build" >&2
  swift build --scratch-path "$scratch" --sanitize="$sanitizer" --build-tests
  log="$scratch/sanitize.log"
  echo "== $sanitizer: test (log in $log)" >&2
  run() {
    swift test --scratch-path "$scratch" --sanitize="$sanitizer" --skip-build \
      --disable-xctest ${test_arguments[@]+"${test_arguments[@]}"}
  }
  if [ "$load" -eq 1 ]; then
    run >"$scratch/load.log" 2>&1 &
    other=$!
  fi
  if ! run 2>&1 | tee "$log"; then status=1; fi
  if [ "$load" -eq 1 ]; then
    if ! wait "$other"; then
      echo "sanitize: the second ($sanitizer) copy failed; see $scratch/load.log" >&2
      status=1
    fi
    cat "$scratch/load.log" >>"$log"
  fi
  if grep -qE "(AddressSanitizer|ThreadSanitizer|LeakSanitizer):|runtime error:|escaped in withoutActuallyEscaping" "$log"; then
    echo "sanitize: $sanitizer reported problems (see $log)" >&2
    status=1
  else
    echo "sanitize: $sanitizer: no reports" >&2
  fi
done
exit $status
