#!/usr/bin/env bash
# test.sh: set up this machine (packages, CRIU), build everything and run the
# whole test suite: sanitized unit tests and integration tests against the real
# daemon, real CRIU and real processes. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test.sh: run as root (the daemon and CRIU need it)" >&2; exit 1; }
bash scripts/setup.sh
make -j"$(nproc)" all
make test
