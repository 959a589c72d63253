"""VoiceBpeTokenizer: cleans text and maps it to and from the BPE ids of the AR and CLVP text inputs.

The vocabulary (`tokenizer.json`) is a run-time asset shipped with the model weights; its path is passed in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer

from tortoise.errors import ModelDownloadError
from tortoise.text import basic_cleaners, english_cleaners

# Special tokens of the official tokenizer.json; the AR model also uses STOP_TOKEN_ID as its stop text token.
STOP_TOKEN_ID = 0
UNK_TOKEN_ID = 1
SPACE_TOKEN_ID = 2
STOP_TOKEN = "[STOP]"
UNK_TOKEN = "[UNK]"
SPACE_TOKEN = "[SPACE]"
_SPECIAL_TOKENS = {STOP_TOKEN: STOP_TOKEN_ID, UNK_TOKEN: UNK_TOKEN_ID, SPACE_TOKEN: SPACE_TOKEN_ID}


class VoiceBpeTokenizer:
    """TorToiSe's text tokenizer: a cleaner followed by byte-pair encoding over tokenizer.json.

    Spaces are encoded as the `[SPACE]` token (so each word is encoded on its own) and every character
    outside the vocabulary becomes one `[UNK]` id. Ids and decoded text match official TorToiSe.

    Args:
        vocab_path: path of the official `tokenizer.json` (255 ids).
        use_basic_cleaners: if True, only lowercase and collapse whitespace (no transliteration, no
            number or abbreviation expansion), like the official `tokenizer_basic=True`.

    Raises:
        ModelDownloadError: if the file is missing, unreadable, or not the TorToiSe vocabulary.
    """

    def __init__(self, vocab_path: str | os.PathLike[str], use_basic_cleaners: bool = False) -> None:
        path = Path(vocab_path)
        if not path.is_file():
            raise ModelDownloadError(
                f"Tokenizer vocabulary not found at {path}. It is the tokenizer.json file that comes "
                "with the TorToiSe model files; download the models again or pass its path."
            )
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a bare Exception for unparsable files
            raise ModelDownloadError(
                f"Tokenizer vocabulary {path} cannot be read ({error}); replace it with the official "
                "tokenizer.json."
            ) from error
        for token, expected_id in _SPECIAL_TOKENS.items():
            if self._tokenizer.token_to_id(token) != expected_id:
                raise ModelDownloadError(
                    f"{path} is not the TorToiSe tokenizer: {token} should have id {expected_id}; "
                    "replace it with the official tokenizer.json."
                )
        self.vocab_path = path
        self.use_basic_cleaners = use_basic_cleaners

    @property
    def vocab_size(self) -> int:
        """Number of BPE ids, special tokens included (255 for the official file)."""
        return self._tokenizer.get_vocab_size()

    def clean(self, text: str) -> str:
        """Apply this tokenizer's cleaner (english or basic) to raw text, as `encode` does first."""
        return basic_cleaners(text) if self.use_basic_cleaners else english_cleaners(text)

    def encode(self, text: str) -> list[int]:
        """Clean text and encode it to BPE ids.

        Args:
            text: raw text; an empty string gives no ids.

        Returns:
            Ids in 0..vocab_size-1, without start or stop tokens. A leading or trailing whitespace run
            gives one SPACE_TOKEN_ID; each character outside the vocabulary gives one UNK_TOKEN_ID.
        """
        return self.encode_cleaned(self.clean(text))

    def encode_cleaned(self, cleaned: str) -> list[int]:
        """Encode text that is already cleaned (see `clean`) to BPE ids, as `encode` does after cleaning."""
        # Substituting the added token before encoding keeps BPE merges inside words.
        return self._tokenizer.encode(cleaned.replace(" ", SPACE_TOKEN)).ids

    def decode(self, ids: Iterable[int]) -> str:
        """Turn ids back into cleaned text.

        Args:
            ids: BPE ids; a list, or a 1-D torch tensor or numpy array.

        Returns:
            The text with `[SPACE]` as " " and `[STOP]`/`[UNK]` removed, so characters that were unknown
            (e.g. "%", "&", "[") are lost.
        """
        id_list = ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]
        # Without a decoder in the vocabulary file, tokens come back joined by spaces; drop them.
        text = self._tokenizer.decode(id_list, skip_special_tokens=False).replace(" ", "")
        return text.replace(SPACE_TOKEN, " ").replace(STOP_TOKEN, "").replace(UNK_TOKEN, "")
