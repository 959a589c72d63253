"""ui_handler: the error boundary of every Gradio handler. Deliberate errors (AppError,
TortoiseError) become a short pop-up; anything else is logged with its traceback and shown as
"Internal error". Passwords and other secrets among the arguments never reach the log."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import gradio as gr

from src.errors import AppError
from tortoise import GenerationCancelled, TortoiseError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
REDACTED = "***"
# A parameter with such a name holds a secret; an identifier-like argument with such a name (a setting
# key such as "share_password") means the other text arguments of that call are its secret value.
_SECRET_NAME = re.compile(r"passw(or)?d|secret|token|api_?key|credential", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][\w.-]*")


def user_message(error: BaseException) -> str:
    """The plain-language text for a deliberate error (its message, never a traceback).

    Paths inside Gradio's upload cache are shown as the uploaded file's own name.
    """
    if isinstance(error, GenerationCancelled):
        return "Generation stopped. Nothing was saved."
    return hide_upload_paths(str(error).strip() or type(error).__name__)


def hide_upload_paths(message: str, upload_dir: str | None = None) -> str:
    """`message` with each `<upload cache>/<hash>/<name>` written as just `<name>` (the user's file)."""
    folders = {upload_dir or str(gr.utils.get_upload_folder())}
    folders |= {os.path.realpath(folder) for folder in folders}
    for folder in sorted(folders, key=len, reverse=True):
        message = re.sub(re.escape(folder.rstrip("/\\")) + r"[/\\][^/\\\s]+[/\\]", "", message)
    return message


def ui_handler(fn: F) -> F:
    """Wrap a handler so users see a message instead of a traceback.

    AppError and TortoiseError raise `gr.Error(message)`; other exceptions are logged with
    `log.exception` (arguments and traceback) and raise "Internal error, see the log" with the
    elapsed time. `gr.Error` raised by the handler itself passes through.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (AppError, TortoiseError) as error:
            log.info("%s: %s", fn.__name__, scrub(str(error), secret_values(fn, args, kwargs)))
            raise gr.Error(as_html(user_message(error)), print_exception=False) from None
        except Exception as error:
            elapsed = time.perf_counter() - started
            hidden = secret_values(fn, args, kwargs)
            log.error(
                "Internal error in %s (args=%s, kwargs=%s)\n%s",
                fn.__name__,
                scrub(_short_args(redact(args, hidden)), hidden),
                scrub(_short_args(redact(kwargs, hidden)), hidden),
                scrub("".join(traceback.format_exception(error)).rstrip(), hidden),
            )
            raise gr.Error(
                f"Internal error after {elapsed:.1f} s, see the log for details.",
                print_exception=False,
            ) from None

    return wrapper  # type: ignore[return-value]


def as_html(message: str) -> str:
    """Escape a plain message for Gradio's pop-up (which renders HTML) keeping its line breaks."""
    return html.escape(message).replace("\n", "<br>")


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _short_args(values: tuple | dict) -> str:
    """Each argument's repr, cut to a readable length on its own (a long context hides nothing)."""
    if isinstance(values, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in values.items()) + "}"
    return "(" + ", ".join(_short(v) for v in values) + ")"


def secret_values(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> list[str]:
    """The text arguments of a call to `fn` that must not be logged.

    These are the values of parameters named like a secret (`password`, `token`, ...), and, when an
    argument names a secret (`save_setting(ctx, "share_password", value)`), every other text argument.
    """
    found: list[str] = []
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = dict(kwargs)
    for name, value in bound.items():
        if _SECRET_NAME.search(name) and isinstance(value, str) and value:
            found.append(value)
    texts = [v for v in (*args, *kwargs.values()) if isinstance(v, str) and v]
    keys = [v for v in texts if _IDENTIFIER.fullmatch(v) and _SECRET_NAME.search(v)]
    if keys:
        found += [v for v in texts if v not in keys]
    return found


def redact(value: Any, hidden: Iterable[str]) -> Any:
    """`value` (an args tuple or kwargs dict) with each hidden string replaced by REDACTED."""
    hidden = set(hidden)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(v, str) and v in hidden else v for k, v in value.items()}
    return tuple(REDACTED if isinstance(v, str) and v in hidden else v for v in value)


def scrub(text: str, hidden: Iterable[str]) -> str:
    """`text` with every occurrence of a hidden string (as typed or as repr() escapes it) removed."""
    for secret in sorted(set(hidden), key=len, reverse=True):
        text = text.replace(secret, REDACTED).replace(repr(secret)[1:-1], REDACTED)
    return text
