"""ui_handler: the error boundary of every Gradio handler. Deliberate errors (AppError,
TortoiseError) become a short pop-up; anything else is logged with its traceback and shown as
"Internal error"."""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from src.errors import AppError
from tortoise.errors import GenerationCancelled, TortoiseError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


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
            log.info("%s: %s", fn.__name__, error)
            raise gr.Error(as_html(user_message(error)), print_exception=False) from None
        except Exception:
            elapsed = time.perf_counter() - started
            log.exception(
                "Internal error in %s (args=%r, kwargs=%r)",
                fn.__name__,
                _short(args),
                _short(kwargs),
            )
            raise gr.Error(
                f"Internal error after {elapsed:.1f} s, see the log for details.",
                print_exception=False,
            ) from None

    return wrapper  # type: ignore[return-value]


def as_html(message: str) -> str:
    """Escape a plain message for Gradio's pop-up (which renders HTML) keeping its line breaks."""
    return html.escape(message).replace("\n", "<br>")


def _short(value: Any, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
