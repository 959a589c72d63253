#!/usr/bin/env bash
# Set up venv/ with the ROCm build of torch (AMD GPUs on Linux; needs the ROCm driver stack),
# then the pinned requirements, then check that torch works. Safe to run again.
#   ./setup-rocm.sh            install or repair
#   ./setup-rocm.sh --check    only report the torch build and device
# Settings such as TORCH_VERSION are environment variables; see scripts/setup-common.sh.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/setup-common.sh
source scripts/setup-common.sh
run_setup rocm "$@"
