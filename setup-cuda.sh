#!/usr/bin/env bash
# Set up venv/ with the CUDA build of torch (NVIDIA GPUs; needs a recent NVIDIA driver),
# then the pinned requirements, then check that torch works. Safe to run again.
#   ./setup-cuda.sh            install or repair
#   ./setup-cuda.sh --check    only report the torch build and device
# Settings such as TORCH_VERSION are environment variables; see scripts/setup-common.sh.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/setup-common.sh
source scripts/setup-common.sh
run_setup cuda "$@"
