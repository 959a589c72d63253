# shellcheck shell=bash
# Shared steps of setup-cpu.sh, setup-cuda.sh, setup-rocm.sh and update.sh. Sourced from the
# repository root, never run on its own. The Windows twin is scripts/setup-common.bat.
#
# Environment variables (all optional):
#   PYTHON               interpreter that creates venv/ (default: python3.11, else python3)
#   TORCH_VERSION        torch release to install (default below; test.sh pins the same one)
#   TORCH_CUDA           CUDA wheel tag, e.g. cu130 or cu128 (must match a build PyTorch publishes)
#   TORCH_ROCM           ROCm wheel tag, e.g. rocm7.1
#   TORCH_INDEX_URL      use this package index for torch instead of the PyTorch one for the tag
#   TORCH_CPU_INDEX_URL  extra index for the Linux CPU build; set it empty to use only pip's own indexes
#   VENV_DIR             the virtual environment to create or reuse (default: venv, in the repository root)

: "${TORCH_VERSION:=2.13.0}"
: "${TORCH_CUDA:=cu130}"
: "${TORCH_ROCM:=rocm7.1}"
: "${TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu}"
PYTORCH_WHEEL_BASE="https://download.pytorch.org/whl"
: "${VENV_DIR:=venv}"
VENV_PY="$VENV_DIR/bin/python"
CONSTRAINT_FILE="$VENV_DIR/torch-constraint.txt"
BACKEND_FILE="$VENV_DIR/setup-backend.txt"

say() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Pick the interpreter for a new venv: $PYTHON, else python3.11, else python3; it must be >= 3.11.
choose_python() {
    if [ -z "${PYTHON:-}" ]; then
        if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
    fi
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "'$PYTHON' was not found. Install Python 3.11 (with its venv module) or set PYTHON=/path/to/python3.11."
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "'$PYTHON' is older than Python 3.11. Install 3.11 or set PYTHON=/path/to/python3.11."
}

# Create venv/ unless it already has a python; an existing venv is reused as it is.
ensure_venv() {
    if [ -x "$VENV_PY" ]; then
        say "Reusing the existing $VENV_DIR/"
        return 0
    fi
    choose_python
    say "Creating $VENV_DIR/ with $PYTHON"
    "$PYTHON" -m venv "$VENV_DIR" \
        || die "could not create $VENV_DIR/. On Debian/Ubuntu install the venv module: sudo apt install python3-venv"
}

# Set TORCH_SPEC (the exact pip requirement) and TORCH_PIP_ARGS (where pip finds it) for a backend.
resolve_torch_spec() {
    local backend=$1 tag=""
    TORCH_PIP_ARGS=()
    case "$backend" in
        cuda) tag=$TORCH_CUDA ;;
        rocm) tag=$TORCH_ROCM ;;
        cpu)
            # PyPI's Linux torch wheel drags in gigabytes of CUDA libraries; the +cpu build does not.
            # macOS wheels are CPU/MPS builds already and carry no local tag.
            if [ "$(uname -s)" = "Linux" ] && [ -n "$TORCH_CPU_INDEX_URL" ]; then
                tag=cpu
                TORCH_PIP_ARGS=(--extra-index-url "$TORCH_CPU_INDEX_URL")
            fi
            ;;
        *) die "unknown backend '$backend' (expected cpu, cuda or rocm)" ;;
    esac
    TORCH_SPEC="torch==$TORCH_VERSION${tag:++$tag}"
    if [ "$backend" != cpu ]; then
        TORCH_PIP_ARGS=(--index-url "${TORCH_INDEX_URL:-$PYTORCH_WHEEL_BASE/$tag}")
    fi
}

# Install the torch build first, so that nothing installed later can choose a different one.
install_torch() {
    local backend=$1
    if "$VENV_PY" scripts/torch_build.py is-installed "$TORCH_SPEC"; then
        say "$TORCH_SPEC is already installed; skipping the torch download"
        return 0
    fi
    say "Installing $TORCH_SPEC ${TORCH_PIP_ARGS[*]+${TORCH_PIP_ARGS[*]}}"
    if ! "$VENV_PY" -m pip install "$TORCH_SPEC" ${TORCH_PIP_ARGS[@]+"${TORCH_PIP_ARGS[@]}"}; then
        case "$backend" in
            cuda) die "pip could not install $TORCH_SPEC. If PyTorch publishes no '$TORCH_CUDA' build of torch $TORCH_VERSION, pick a current tag from https://pytorch.org/get-started/locally/ and rerun, e.g.: TORCH_CUDA=cu128 ./setup-cuda.sh" ;;
            rocm) die "pip could not install $TORCH_SPEC. If PyTorch publishes no '$TORCH_ROCM' build of torch $TORCH_VERSION, pick a current tag from https://pytorch.org/get-started/locally/ and rerun, e.g.: TORCH_ROCM=rocm6.4 ./setup-rocm.sh" ;;
            *) die "pip could not install $TORCH_SPEC (see pip's message above). Offline or behind a mirror? Try TORCH_CPU_INDEX_URL= ./setup-cpu.sh" ;;
        esac
    fi
}

# Install requirements.txt with the installed torch build pinned by a constraints file, so a
# package that depends on torch can never make pip swap in another build (e.g. a CUDA one).
install_requirements() {
    "$VENV_PY" scripts/torch_build.py write-constraint "$CONSTRAINT_FILE" \
        || die "torch is missing from $VENV_DIR/; run ./setup-cuda.sh, ./setup-rocm.sh or ./setup-cpu.sh"
    say "Installing requirements.txt (the torch build stays as pinned in $CONSTRAINT_FILE)"
    "$VENV_PY" -m pip install -r requirements.txt -c "$CONSTRAINT_FILE" \
        || die "pip could not install requirements.txt (see pip's message above)"
    # openai-whisper without its declared dependencies: they would pull in triton
    "$VENV_PY" -m pip install --no-deps -r requirements-nodeps.txt -c "$CONSTRAINT_FILE" \
        || die "pip could not install requirements-nodeps.txt (see pip's message above)"
}

verify_torch() {
    say "Checking the torch build"
    "$VENV_PY" scripts/torch_build.py verify --backend "$1" \
        || die "torch is installed but broken; delete $VENV_DIR/ and run the setup script again"
}

usage() {
    cat <<EOF
Usage: ./setup-$1.sh [--check]
Creates or reuses venv/, installs torch $TORCH_VERSION for $1, then requirements.txt, then checks
that torch works. Safe to run again. --check only runs the final checks on the existing venv/: the torch
build, then the app's doctor (GPU, ffmpeg, model files, writable folders, disk space).
Settings are environment variables; see the top of scripts/setup-common.sh.
EOF
}

# Entry point of the setup-<backend>.sh scripts.
run_setup() {
    local backend=$1
    shift
    case "${1:-}" in
        "") ;;
        -h | --help) usage "$backend"; return 0 ;;
        --check)
            [ -x "$VENV_PY" ] || die "no $VENV_DIR/ yet; run ./setup-$backend.sh without --check first"
            verify_torch "$backend"
            say "Checking the installation (models, ffmpeg, GPU, folders, disk space)"
            "$VENV_PY" -m src.doctor || say "The check above lists problems to fix before generating."
            return 0
            ;;
        *) usage "$backend" >&2; die "unknown argument '$1'" ;;
    esac
    resolve_torch_spec "$backend"
    ensure_venv
    install_torch "$backend"
    install_requirements
    printf '%s\n' "$backend" > "$BACKEND_FILE"
    verify_torch "$backend"
    say "Setup finished. Start the app with ./start.sh"
}
