#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
#   ./test.sh            all tests
#   ./test.sh -k mel     extra arguments go to pytest
# Creates ./venv, installs the pinned packages (torch pinned to TORCH_VERSION, default 2.13.0),
# installs missing Debian packages when run as root, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")"

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(ffmpeg shellcheck chromium)

install_apt_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: missing system packages (${missing[*]}); some tests may fail. Install them with apt-get." >&2
        return 0
    fi
    echo "Installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_python_packages() {
    [ -x venv/bin/python ] || "$PYTHON" -m venv venv
    # re-install only when a requirements file or the torch pin changed
    local stamp="venv/.test-requirements.sha256"
    local want
    want=$( (cat requirements.txt requirements-nodeps.txt requirements-dev.txt; echo "torch==$TORCH_VERSION") \
        | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "Installing Python packages into venv/ (torch==$TORCH_VERSION)"
    venv/bin/python -m pip install -q --disable-pip-version-check \
        "torch==$TORCH_VERSION" -r requirements.txt -r requirements-dev.txt
    venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
    echo "$want" > "$stamp"
}

install_apt_packages
install_python_packages
exec venv/bin/python -m pytest "$@"
