"""The Generate tab's `generate` endpoint through gradio_client against the app (tiny models)."""

import pytest

from src.metadata import read_metadata

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    return Client(served_app.url, verbose=False)


def test_generate_endpoint_writes_the_files_and_returns_the_seed(client, served_app):
    output, candidate, sample, results, notes = client.predict(
        text="Hello from the API.",
        voice="amy",
        num_autoregressive_samples=4,
        diffusion_iterations=4,
        seed=42,
        preset=None,
        mic_audio=None,
        api_name="/generate",
    )
    assert results["headers"] == ["Seed", "Time (s)", "Files"]
    assert results["data"][0][0] == 42
    assert output.endswith(".wav")  # downloaded copy
    run_dirs = sorted((served_app.ctx.paths.results_dir / "amy").iterdir())
    produced = run_dirs[-1] / "result.wav"
    assert produced.is_file() and read_metadata(produced).seed == 42
    assert "Seed used: **42**" in notes


def test_generate_endpoint_reports_bad_input_in_plain_words(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Please provide text"):
        client.predict(text="", voice="amy", preset=None, mic_audio=None, api_name="/generate")
