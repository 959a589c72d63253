#!/usr/bin/env bash
# Update this checkout: git pull, then reinstall requirements.txt around the installed torch build
# (which stays as it is). Refuses to run while tracked files have local changes.
set -euo pipefail

main() {
    cd "$(dirname "$0")"
    command -v git >/dev/null 2>&1 || { echo "ERROR: git is not installed." >&2; return 1; }
    if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        echo "ERROR: $(pwd) is not a git checkout (was it downloaded as a zip?)." >&2
        echo "Clone the repository with git to be able to update it, or download a newer zip." >&2
        return 1
    fi

    local changes
    changes="$(git status --porcelain --untracked-files=no)"
    if [ -n "$changes" ]; then
        {
            echo "ERROR: not updating, because these tracked files have local changes:"
            printf '%s\n' "$changes" | sed 's/^/    /'
            echo "A pull could conflict with them. Either keep them aside and bring them back after:"
            echo "    git stash && ./update.sh && git stash pop"
            echo "or throw them away (this cannot be undone):"
            echo "    git checkout -- <file>"
            echo "Your voices/, results/, training/, models/ and config/ are not tracked and never block."
        } >&2
        return 1
    fi

    echo "==> git pull"
    if ! git pull --ff-only; then
        echo "ERROR: git pull failed (see above). If your branch has its own commits, merge or rebase by hand." >&2
        return 1
    fi

    if [ ! -x venv/bin/python ]; then
        echo "==> Code updated. There is no venv/ yet: run ./start.sh (it sets itself up) or a ./setup-*.sh script."
        return 0
    fi

    # Sourced only now, so the freshly pulled version (and its torch pin) is the one used.
    # shellcheck source=scripts/setup-common.sh
    source scripts/setup-common.sh
    install_requirements
    local backend=cpu
    [ -f "$BACKEND_FILE" ] && backend="$(cat "$BACKEND_FILE")"
    if ! "$VENV_PY" scripts/torch_build.py is-installed --ignore-local "torch==$TORCH_VERSION"; then
        echo "==> NOTE: this version of the app pins torch $TORCH_VERSION, but venv/ has another one."
        echo "    Run ./setup-$backend.sh to install it."
    fi
    echo "==> Update finished."
}

# One line, so bash has read all it will run before git pull can rewrite this file.
main "$@"; exit $?
