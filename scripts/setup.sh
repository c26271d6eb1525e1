#!/usr/bin/env bash
# Installs what SkelLab needs to build: OpenBLAS, GNU readline and pkg-config (Debian packages).
# With --mpi also Open MPI (libopenmpi-dev, openmpi-bin) for `swift build --traits MPI` and
# mpirun. Idempotent: installs only what is missing, so running it twice is safe and quick.
set -euo pipefail

packages=(libopenblas-dev libreadline-dev zlib1g-dev pkg-config)
modules=(openblas readline zlib)
for argument in "$@"; do
  case "$argument" in
    --mpi)
      packages+=(libopenmpi-dev openmpi-bin)
      modules+=(ompi-c)
      ;;
    *)
      echo "setup: unknown option '$argument' (setup.sh [--mpi])" >&2
      exit 2
      ;;
  esac
done
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing ${missing[*]}, and apt-get is not available." >&2
    echo "setup: install ${missing[*]} (or their equivalents) by hand." >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "setup: missing ${missing[*]}; run as root or install sudo, then run:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for module in "${modules[@]}"; do
  if ! pkg-config --exists "$module"; then
    echo "setup: pkg-config cannot find '$module' after installing; check PKG_CONFIG_PATH." >&2
    exit 1
  fi
done

if ! command -v swift >/dev/null 2>&1; then
  echo "setup: no 'swift' on PATH; SkelLab needs a Swift 6 toolchain." >&2
  exit 1
fi
