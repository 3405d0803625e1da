#!/usr/bin/env bash
# run.sh - run the stasis benchmark suite (plain CRIU vs stasis, same run).
#
#   bench/run.sh [--quick] [--sizes 1,2,4,8] [--runs 3] [...]   (--help for all)
#
# Needs root, the provisioned CRIU ($STASIS_CRIU), and the release build
# (make build/stasis-streamer build/stasisd build/stasis build/tests/bin/memhog).
# Writes bench/results/<UTC stamp>/{results.md,raw.csv,summary.csv,*.png,meta.txt}.
# Not part of the test suite's pass/fail; docs/benchmarks.md has the method.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$here/bench.py" "$@"
