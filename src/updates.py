"""Check for Updates: `git fetch` the installation's upstream branch and count the commits it is
behind. Harmless everywhere: outside a git checkout, without git, or offline it only says so."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 20.0  # a slow or unreachable remote must not hold up the page
GIT_TIMEOUT_S = 5.0  # local git commands
RECHECK_AFTER_S = 3600.0  # page loads within this time reuse the last result

# states of UpdateStatus
UP_TO_DATE, BEHIND, UNKNOWN, NOT_CHECKED = "up_to_date", "behind", "unknown", "not_checked"


@dataclass(frozen=True)
class UpdateStatus:
    """The outcome of one check.

    Attributes:
        state: UP_TO_DATE, BEHIND, UNKNOWN (offline, no upstream, git failed) or NOT_CHECKED
            (not a git checkout, no git).
        message: one plain sentence for the UI and the log.
        behind: commits on the upstream branch that are not here (None when unknown).
        upstream: the upstream branch, e.g. "origin/master" (None when unknown).
    """

    state: str
    message: str
    behind: int | None = None
    upstream: str | None = None


class _GitFailed(Exception):
    """A git command failed; its message is git's own last line."""


def check_for_updates(
    root: str | os.PathLike[str],
    *,
    fetch_timeout_s: float = FETCH_TIMEOUT_S,
    git: str | None = None,
) -> UpdateStatus:
    """Fetch the upstream of `root`'s current branch and compare it with HEAD. Never raises.

    Args:
        root: the installation folder; it must be the top of a git work tree (a folder inside
            some other repository does not count).
        fetch_timeout_s: give up on `git fetch` after this many seconds.
        git: the git executable (default: `git` on PATH).

    Returns:
        The status; the message says what to do (run update.sh / update.bat) when behind.
    """
    git = git or shutil.which("git")
    if git is None:
        return UpdateStatus(NOT_CHECKED, "git is not installed, so updates cannot be checked.")
    root = Path(root).resolve()
    try:
        top = _git(git, root, "rev-parse", "--show-toplevel")
    except _GitFailed:
        top = ""
    if not top or Path(top).resolve() != root:
        return UpdateStatus(
            NOT_CHECKED, f"{root} is not a git checkout, so updates are not checked."
        )
    try:
        upstream = _git(git, root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}")
    except _GitFailed:
        return UpdateStatus(
            UNKNOWN, "This branch tracks no remote branch, so updates are not checked."
        )
    remote = upstream.split("/", 1)[0]
    try:
        _git(git, root, "fetch", "--quiet", remote, timeout_s=fetch_timeout_s)
    except _GitFailed as error:
        return UpdateStatus(
            UNKNOWN,
            f"Could not reach {remote} to check for updates (offline?): {error}",
            None,
            upstream,
        )
    try:
        behind = int(_git(git, root, "rev-list", "--count", "HEAD..@{u}"))
    except (_GitFailed, ValueError) as error:
        return UpdateStatus(UNKNOWN, f"Could not compare with {upstream}: {error}", None, upstream)
    if behind == 0:
        return UpdateStatus(UP_TO_DATE, f"Up to date with {upstream}.", 0, upstream)
    return UpdateStatus(
        BEHIND,
        f"An update is available: {behind} new commit(s) on {upstream}. Run update.sh "
        "(update.bat on Windows) to install it, then restart.",
        behind,
        upstream,
    )


def _git(git: str, root: Path, *args: str, timeout_s: float = GIT_TIMEOUT_S) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "LC_ALL": "C"}
    env.pop("GIT_DIR", None)  # a caller's GIT_DIR would point the check at another repository
    try:
        result = subprocess.run(
            [git, "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _GitFailed(f"git {args[0]} took longer than {timeout_s:g} s") from None
    except OSError as error:
        raise _GitFailed(str(error)) from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise _GitFailed(lines[-1].strip() if lines else f"git {args[0]} failed")
    return result.stdout.strip()


class UpdateChecker:
    """Runs the check at most once per RECHECK_AFTER_S for page loads, logging each result.

    Args:
        root: the installation folder.
        check: the check to run (tests pass a fake).
    """

    def __init__(self, root: str | os.PathLike[str], check=check_for_updates) -> None:
        self.root = Path(root)
        self._check = check
        self._lock = threading.Lock()
        self._last: UpdateStatus | None = None
        self._checked_at = 0.0

    def check(self, *, force: bool = False) -> UpdateStatus:
        """The status, from the last check when it is recent and `force` is off."""
        with self._lock:
            recent = time.monotonic() - self._checked_at < RECHECK_AFTER_S
            if self._last is not None and recent and not force:
                return self._last
            status = self._check(self.root)
            level = logging.WARNING if status.state == BEHIND else logging.INFO
            log.log(level, "Check for updates: %s", status.message)
            self._last, self._checked_at = status, time.monotonic()
            return status
