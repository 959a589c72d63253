#!/usr/bin/env bash
# Start the web UI: ./start.sh [app.py options], e.g. ./start.sh --listen 0.0.0.0:7860 --low-vram
# On a fresh clone (no venv/ yet) it first runs the matching setup script: CUDA when nvidia-smi
# works, ROCm when rocminfo works, otherwise CPU. Set SETUP_BACKEND=cpu|cuda|rocm to choose.
# Set VENV_DIR to keep the virtual environment elsewhere than venv/ (the setup scripts honour it too).
set -euo pipefail
cd "$(dirname "$0")"

detect_backend() {
    if nvidia-smi -L >/dev/null 2>&1; then
        echo cuda
    elif rocminfo >/dev/null 2>&1; then
        echo rocm
    else
        echo cpu
    fi
}

VENV_DIR="${VENV_DIR:-venv}"

if [ ! -x "$VENV_DIR/bin/python" ]; then
    backend="${SETUP_BACKEND:-$(detect_backend)}"
    case "$backend" in
        cpu | cuda | rocm) ;;
        *) echo "ERROR: SETUP_BACKEND must be cpu, cuda or rocm, not '$backend'" >&2; exit 1 ;;
    esac
    echo "==> No $VENV_DIR/ yet: running ./setup-$backend.sh first (one-time, downloads several GB for a GPU build)"
    bash "./setup-$backend.sh"
fi

[ -f app.py ] || { echo "ERROR: app.py is missing from $(pwd); is this a complete checkout?" >&2; exit 1; }

# A drop-in ffmpeg in bin/ wins over a system-wide one, for the app and everything it starts.
PATH="$(pwd)/bin:$PATH"
export PATH
exec "$VENV_DIR/bin/python" app.py "$@"
