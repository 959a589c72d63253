"""Pronunciation lexicon: word -> respelling, applied to the text before TorToiSe's cleaners.

A global lexicon lives in `config/lexicon.json`; a project may add its own (its entries win). Words match
whole (never inside another word). An entry written in lower case matches any case; an entry with
capitals matches only that spelling, so `US -> U S` leaves "us" alone. Replacement is one pass, so a
respelling is never replaced again; entries whose respellings would feed each other in a loop are refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from src.config_file import write_json_atomic
from src.errors import InvalidInput

log = logging.getLogger(__name__)

LEXICON_FILE = "lexicon.json"
SCHEMA_VERSION = 1
_MARKUP_CHARS = set("[]{}")
_WORD_CHAR_RE = re.compile(r"\w")


class LexiconError(InvalidInput):
    """Lexicon entries that cannot be used; the message lists every problem by row."""


@dataclass(frozen=True)
class LexiconEntry:
    """One rule: `word` (a word or a short phrase) is said as `respelling`."""

    word: str
    respelling: str

    @property
    def is_case_sensitive(self) -> bool:
        """Entries with capitals match that exact spelling only; lower-case entries match any case."""
        return self.word != self.word.lower()

    @property
    def key(self) -> str:
        """What two entries must not share: the word in lower case."""
        return self.word.lower()

    def pattern(self) -> str:
        body = r"\s+".join(re.escape(part) for part in self.word.split())
        body = body if self.is_case_sensitive else f"(?i:{body})"
        return rf"(?<!\w){body}(?!\w)"


@dataclass(frozen=True)
class Lexicon:
    """A checked set of entries (build it with `build_lexicon`), applied with `apply`."""

    entries: tuple[LexiconEntry, ...] = ()

    def __post_init__(self) -> None:
        # longest words first, so "New York" wins over "York"; exact-case entries before the others
        ordered = sorted(self.entries, key=lambda e: (-len(e.word), not e.is_case_sensitive))
        regex = re.compile("|".join(f"({e.pattern()})" for e in ordered)) if ordered else None
        object.__setattr__(self, "_ordered", tuple(ordered))
        object.__setattr__(self, "_regex", regex)

    def apply(self, text: str) -> str:
        """Replace every whole-word match by its respelling, in one pass.

        The respelling is used as typed, except that a lower-case entry matched with a capital (at a
        sentence start) gets one too; the cleaners lower-case everything afterwards anyway.
        """
        if self._regex is None or not text:
            return text

        def replace(match: re.Match) -> str:
            entry = self._ordered[match.lastindex - 1]
            found, respelling = match.group(0), entry.respelling
            if not entry.is_case_sensitive and found[:1].isupper() and respelling[:1].islower():
                return respelling[:1].upper() + respelling[1:]
            return respelling

        return self._regex.sub(replace, text)

    def merged(self, overlay: Lexicon) -> Lexicon:
        """This lexicon with `overlay`'s entries added; an overlay entry replaces one with the same word.

        Raises:
            LexiconError: the two together form a loop.
        """
        replaced = {entry.key for entry in overlay.entries}
        rows = [(e.word, e.respelling) for e in self.entries if e.key not in replaced]
        return build_lexicon(rows + [(e.word, e.respelling) for e in overlay.entries])

    def rows(self) -> list[list[str]]:
        """[[word, respelling], ...] for a table."""
        return [[e.word, e.respelling] for e in self.entries]


def build_lexicon(rows: Iterable[Sequence[object]]) -> Lexicon:
    """Check table rows and build a Lexicon. Rows that are blank in both cells are skipped.

    Args:
        rows: (word, respelling) pairs, as a table gives them (None and extra cells are tolerated).

    Raises:
        LexiconError: every problem at once, by 1-based row: an empty word or respelling, markup
            characters, a word without letters or digits, a repeated word, or entries forming a loop
            (A -> B, B -> A, or a respelling that contains its own word).
    """
    entries: list[LexiconEntry] = []
    numbers: list[int] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        cells = list(row) + ["", ""]
        word = " ".join(str(cells[0] or "").split())
        respelling = " ".join(str(cells[1] or "").split())
        if not word and not respelling:
            continue
        problem = _entry_problem(word, respelling)
        if problem is None and word.lower() in seen:
            problem = f"'{word}' is already in row {seen[word.lower()]}; keep one of them"
        if problem:
            problems.append(f"Row {number}: {problem}.")
            continue
        seen[word.lower()] = number
        entries.append(LexiconEntry(word, respelling))
        numbers.append(number)
    if not problems:
        problems.extend(_loops(entries, numbers))
    if problems:
        raise LexiconError("The lexicon cannot be used:\n" + "\n".join(problems))
    return Lexicon(tuple(entries))


def _entry_problem(word: str, respelling: str) -> str | None:
    if not word:
        return f"the respelling '{respelling}' has no word; type the word it replaces"
    if not respelling:
        return f"'{word}' has no respelling; type how to say it, or delete the row"
    if _MARKUP_CHARS & set(word + respelling):
        return f"'{word}' -> '{respelling}' holds [ ] {{ }}, which are markup; leave them out"
    if not _WORD_CHAR_RE.search(word):
        return f"'{word}' has no letter or digit, so it is not a word"
    return None


def _loops(entries: Sequence[LexiconEntry], numbers: Sequence[int]) -> list[str]:
    """A message per loop: entry i points at entry j when j's word occurs in i's respelling."""
    patterns = [re.compile(e.pattern()) for e in entries]
    edges = {
        i: [j for j, pattern in enumerate(patterns) if pattern.search(entry.respelling)]
        for i, entry in enumerate(entries)
    }
    loops: list[str] = []
    reported: set[frozenset[int]] = set()
    state: dict[int, str] = {}  # "open" while on the current path, "done" afterwards

    def visit(node: int, path: list[int]) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    chain = " -> ".join(f"'{entries[k].word}'" for k in [*cycle, nxt])
                    rows = ", ".join(str(numbers[k]) for k in cycle)
                    loops.append(
                        f"Rows {rows} form a loop ({chain}): a respelling contains a word of the lexicon "
                        "that leads back; change one of the respellings."
                        if len(cycle) > 1
                        else f"Row {rows}: the respelling of '{entries[nxt].word}' contains the word itself; "
                        "respell it differently."
                    )
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = "done"

    for start in range(len(entries)):
        if start not in state:
            visit(start, [])
    return loops


# ---------------------------------------------------------------------- files


@dataclass(frozen=True)
class LoadedLexicon:
    """Rows read from a lexicon file, and what went wrong reading it (the file itself is kept)."""

    rows: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...] = ()


def global_lexicon_path(config_dir: str | os.PathLike[str]) -> Path:
    """`config/lexicon.json`."""
    return Path(config_dir) / LEXICON_FILE


def project_lexicon_path(project_dir: str | os.PathLike[str]) -> Path:
    """`<project folder>/lexicon.json`: a project's own entries, laid over the global ones."""
    return Path(project_dir) / LEXICON_FILE


def read_lexicon_rows(path: str | os.PathLike[str]) -> LoadedLexicon:
    """The raw rows of a lexicon file, unchecked (so a hand-edited loop can be shown and fixed).

    A missing file gives no rows. An unreadable file gives no rows and a warning, and is renamed to
    `lexicon.json.bak` so the next save cannot overwrite it.
    """
    target = Path(path)
    if not target.is_file():
        return LoadedLexicon(())
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("it has no list of entries")
        rows = tuple((str(e.get("word") or ""), str(e.get("respelling") or "")) for e in entries)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        backup = target.with_name(target.name + ".bak")
        os.replace(target, backup)
        message = (f"The lexicon {target} could not be read ({error}); it was kept as {backup.name} and "
                   "an empty lexicon is used.")  # fmt: skip
        log.warning(message)
        return LoadedLexicon((), (message,))
    return LoadedLexicon(rows)


def load_lexicon(path: str | os.PathLike[str]) -> Lexicon:
    """Read and check a lexicon file (missing = empty).

    Raises:
        LexiconError: the file holds entries that cannot be used (the message lists them).
    """
    return build_lexicon(read_lexicon_rows(path).rows)


def save_lexicon(path: str | os.PathLike[str], rows: Iterable[Sequence[object]]) -> Lexicon:
    """Check table rows and write them atomically; nothing is written when they are refused.

    Returns:
        The saved Lexicon.

    Raises:
        LexiconError: as `build_lexicon`.
    """
    lexicon = build_lexicon(rows)
    entries = [{"word": e.word, "respelling": e.respelling} for e in lexicon.entries]
    write_json_atomic(path, {"schema_version": SCHEMA_VERSION, "entries": entries}, indent="\t")
    return lexicon


def effective_lexicon(config_dir: str | os.PathLike[str], project_dir: str | os.PathLike[str] | None = None
                      ) -> Lexicon:  # fmt: skip
    """The global lexicon with a project's own entries laid over it (None: the global one alone).

    Raises:
        LexiconError: a file holds bad entries, or the two together form a loop.
    """
    lexicon = load_lexicon(global_lexicon_path(config_dir))
    if project_dir is None:
        return lexicon
    return lexicon.merged(load_lexicon(project_lexicon_path(project_dir)))
