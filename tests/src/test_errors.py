"""AppError hierarchy: user-facing messages and the classes callers catch."""

import pytest

from src.errors import (
    AppError,
    InvalidInput,
    InvalidVoiceName,
    MetadataError,
    ResultNotFound,
    SettingsError,
    UnsafeLatents,
    VoiceNotFound,
)


def test_voice_not_found_tells_where_to_put_clips():
    error = VoiceNotFound("mary", "/x/voices")
    assert isinstance(error, AppError)
    assert "mary" in str(error) and "/x/voices/mary/" in str(error) and "Refresh" in str(error)
    assert error.voice == "mary"


def test_messages_and_hierarchy():
    assert isinstance(InvalidVoiceName("a/b", "it has a slash"), InvalidInput)
    assert "a/b" in str(InvalidVoiceName("a/b", "it has a slash"))
    assert issubclass(UnsafeLatents, MetadataError)
    assert "results/x.wav" in str(ResultNotFound("results/x.wav"))
    with pytest.raises(AppError, match="bad"):
        raise SettingsError("bad value")
    assert SettingsError("bad value").message == "bad value"
