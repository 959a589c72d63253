#!/usr/bin/env bash
# Set up venv/ with the CPU-only build of torch (any machine; slow but dependable),
# then the pinned requirements, then check that torch works. Safe to run again.
#   ./setup-cpu.sh            install or repair
#   ./setup-cpu.sh --check    only report the torch build and device
# Settings such as TORCH_VERSION are environment variables; see scripts/setup-common.sh.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/setup-common.sh
source scripts/setup-common.sh
run_setup cpu "$@"
