#!/usr/bin/env bash
# The README's first command: sets up, builds optimised, pretrains at CPU scale on the built-in
# synthetic dataset, then compares a linear probe and KNN for the pretrained encoder and a
# randomly initialised one. Extra arguments go to the script: --set method=mamp, --set epochs=20.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== swift build (release)" >&2
# The MPI trait when Open MPI is installed: the same build as scripts/test.sh and scripts/skellab.
traits=()
if pkg-config --exists ompi-c 2>/dev/null; then traits=(--traits MPI); fi
swift build -c release "${traits[@]}" --product skellab
exec .build/release/skellab run scripts/pretrain-synthetic.skl "$@"
