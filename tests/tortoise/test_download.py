"""Model downloads against a fake hub on 127.0.0.1: fallback repo, resume, corrupt-file recovery,
sha256 checks and the offline error. No internet is used."""

import hashlib
import http.server
import io
import threading
from pathlib import Path

import pytest
import torch

from tortoise.download import MODEL_FILES, ModelFile, ModelStore, checkpoint_problem
from tortoise.errors import ModelDownloadError


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class FakeHub:
    """Serves /{repo}/resolve/{rev}/{path} like the HF hub, and /raw/{file} like GitHub raw."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.truncate_next: set[str] = set()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _lookup(self):
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path, self.headers.get("Range")))
                if "/resolve/" in path:
                    repo, rest = path.lstrip("/").split("/resolve/", 1)
                    key = f"{repo}/{rest.split('/', 1)[1]}"
                else:
                    key = path.lstrip("/")
                return key, hub.files.get(key)

            def _headers(self, key, data, status=200, start=0):
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", '"' + hashlib.sha1(data).hexdigest() + '"')
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def do_HEAD(self):
                key, data = self._lookup()
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self._headers(key, data)

            def do_GET(self):
                key, data = self._lookup()
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                status = 206 if start else 200
                self._headers(key, data, status, start)
                body = data[start:]
                if key in hub.truncate_next:
                    hub.truncate_next.discard(key)
                    body = body[: len(body) // 2]  # connection drops half way
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub():
    h = FakeHub()
    yield h
    h.close()


def make_store(hub, tmp_path, **kw) -> ModelStore:
    return ModelStore(
        tmp_path / "models", offline=False, hf_endpoint=hub.url, asset_base_url=hub.url + "/raw", **kw
    )


def test_downloads_from_primary_repo_into_models_dir(hub, tmp_path):
    payload = torch_bytes({"w": torch.ones(3)})
    hub.files["Manmay/tortoise-tts/vocoder.pth"] = payload
    path = make_store(hub, tmp_path).get("vocoder.pth")
    assert path == tmp_path / "models" / "vocoder.pth"
    assert path.read_bytes() == payload


def test_falls_back_to_original_repo_models_folder(hub, tmp_path):
    payload = torch_bytes({"w": torch.zeros(2)})
    hub.files["jbetker/tortoise-tts-v2/.models/rlg_auto.pth"] = payload
    path = make_store(hub, tmp_path).get("rlg_auto.pth")
    assert path.read_bytes() == payload
    assert not (tmp_path / "models" / ".models").exists()


def test_truncated_local_checkpoint_is_detected_deleted_and_fetched_again(hub, tmp_path, caplog):
    payload = torch_bytes({"w": torch.arange(1000.0)})
    hub.files["Manmay/tortoise-tts/clvp2.pth"] = payload
    models = tmp_path / "models"
    models.mkdir()
    (models / "clvp2.pth").write_bytes(payload[: len(payload) // 3])  # the seed's "central directory" failure
    assert "truncated" in checkpoint_problem(models / "clvp2.pth")
    path = make_store(hub, tmp_path).get("clvp2.pth")
    assert path.read_bytes() == payload
    assert "clvp2.pth" in caplog.text and "deleting" in caplog.text


def test_github_asset_checked_against_sha256(hub, tmp_path, reference_dir):
    hub.files["raw/tokenizer.json"] = (reference_dir / "tokenizer.json").read_bytes()
    path = make_store(hub, tmp_path).get("tokenizer.json")
    assert path.read_bytes() == (reference_dir / "tokenizer.json").read_bytes()


def test_github_asset_with_wrong_content_is_rejected(hub, tmp_path):
    hub.files["raw/mel_norms.pth"] = torch_bytes(torch.zeros(80))  # not the official file
    with pytest.raises(ModelDownloadError, match="sha256"):
        make_store(hub, tmp_path).get("mel_norms.pth")
    assert not (tmp_path / "models" / "mel_norms.pth").exists()


def test_interrupted_asset_download_resumes_from_part_file(hub, tmp_path, reference_dir):
    data = (reference_dir / "tokenizer.json").read_bytes()
    hub.files["raw/tokenizer.json"] = data
    hub.truncate_next.add("raw/tokenizer.json")
    store = make_store(hub, tmp_path)
    with pytest.raises(ModelDownloadError):
        store.get("tokenizer.json")  # half the bytes arrive, then the sha256 check fails... or the read
    part = tmp_path / "models" / "tokenizer.json.part"
    if not part.exists():
        # the short body was complete as far as HTTP knew: it was renamed, failed sha256 and was deleted;
        # emulate a dropped connection by leaving a part file behind
        part.write_bytes(data[: len(data) // 2])
    hub.requests.clear()
    assert store.get("tokenizer.json").read_bytes() == data
    assert any(r[2] == f"bytes={len(data) // 2}-" for r in hub.requests), hub.requests


def test_offline_mode_lists_every_missing_file_and_where_to_put_it(tmp_path):
    store = ModelStore(tmp_path / "models", offline=True)
    with pytest.raises(ModelDownloadError) as e:
        store.ensure(["autoregressive.pth", "vocoder.pth", "tokenizer.json"])
    msg = str(e.value)
    for name in ("autoregressive.pth", "vocoder.pth", "tokenizer.json"):
        assert name in msg
    assert str(tmp_path / "models") in msg and "Only Load Models Locally" in msg


def test_offline_from_hf_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ModelStore(tmp_path).offline is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert ModelStore(tmp_path).offline is False


def test_offline_with_files_present_needs_no_network(tmp_path, reference_dir):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tokenizer.json").write_bytes((reference_dir / "tokenizer.json").read_bytes())
    store = ModelStore(models, offline=True)
    assert store.get("tokenizer.json") == models / "tokenizer.json"


def test_custom_autoregressive_checkpoint_is_used_as_is(tmp_path):
    finetune = tmp_path / "training" / "voice" / "finetune" / "models" / "100_gpt.pth"
    finetune.parent.mkdir(parents=True)
    finetune.write_bytes(torch_bytes({"w": torch.ones(1)}))
    store = ModelStore(tmp_path / "models", offline=True, overrides={"autoregressive.pth": finetune})
    assert store.get("autoregressive.pth") == finetune


def test_corrupt_custom_checkpoint_is_named_not_deleted(tmp_path):
    bad = tmp_path / "bad_gpt.pth"
    bad.write_bytes(torch_bytes({"w": torch.ones(100)})[:50])
    store = ModelStore(tmp_path / "models", offline=True, overrides={"autoregressive.pth": bad})
    with pytest.raises(ModelDownloadError, match="bad_gpt.pth"):
        store.get("autoregressive.pth")
    assert bad.exists()  # a user's file is never deleted


def test_file_on_neither_repo_gives_clear_error(hub, tmp_path):
    with pytest.raises(ModelDownloadError, match="Could not download cvvp.pth") as e:
        make_store(hub, tmp_path).get("cvvp.pth")
    assert "Manmay/tortoise-tts" in str(e.value) and "jbetker/tortoise-tts-v2" in str(e.value)


def test_unreachable_asset_server_gives_clear_error(tmp_path):
    store = ModelStore(tmp_path / "models", offline=False, asset_base_url="http://127.0.0.1:9/raw")
    with pytest.raises(ModelDownloadError, match="Could not download http://127.0.0.1:9/raw/tokenizer.json"):
        store.get("tokenizer.json")


def test_unknown_file_name_rejected(tmp_path):
    with pytest.raises(ModelDownloadError, match="Unknown model file"):
        ModelStore(tmp_path, offline=True).get("nonsense.pth")


def test_registry_covers_every_official_file():
    assert set(MODEL_FILES) >= {
        "autoregressive.pth",
        "diffusion_decoder.pth",
        "clvp2.pth",
        "cvvp.pth",
        "vocoder.pth",
        "rlg_auto.pth",
        "rlg_diffuser.pth",
        "dvae.pth",
        "tokenizer.json",
        "mel_norms.pth",
    }
    assert all(isinstance(f, ModelFile) for f in MODEL_FILES.values())


def test_legacy_torch_format_is_accepted(tmp_path):
    p = Path(tmp_path) / "old.pth"
    torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
    assert checkpoint_problem(p) is None
