"""Model downloads against a fake hub on 127.0.0.1: fallback repo, resume, corrupt-file recovery,
sha256 checks and the offline error. No internet is used."""

import hashlib
import http.server
import io
import json
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import torch

from tortoise.download import (
    GENERATION_FILES,
    INFERENCE_FILES,
    MODEL_FILES,
    ModelFile,
    ModelStore,
    checkpoint_problem,
)
from tortoise.errors import ModelDownloadError
from tortoise.provenance import read_record


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def commit_of(repo: str) -> str:
    return hashlib.sha1(repo.encode()).hexdigest()


class FakeHub:
    """Serves /{repo}/resolve/{rev}/{path} like the HF hub (X-Repo-Commit, and for LFS files the
    X-Linked-Etag sha256), POST /api/models/{repo}/paths-info/{rev} with each file's published LFS
    sha256 (or git blob id for `small` files), and /raw/{file} like GitHub raw."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.published: dict[str, str] = {}  # key -> sha256 to publish instead of the real one
        self.small: set[str] = set()  # keys stored without LFS (published by git blob id)
        self.paths_info_down = False  # the checksum lookup fails (503)
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
                    revision, file = rest.split("/", 1)
                    if revision not in ("main", commit_of(repo)):
                        return None, None
                    key = f"{repo}/{file}"
                else:
                    key = path.lstrip("/")
                return key, hub.files.get(key)

            def _headers(self, key, data, status=200, start=0):
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", '"' + git_blob_id(data) + '"')
                if key not in hub.small and not key.startswith("raw/"):
                    self.send_header("X-Linked-Etag", '"' + hub.sha256(key) + '"')
                self.send_header("X-Repo-Commit", commit_of(key.split("/")[0] + "/" + key.split("/")[1]))
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

            def do_POST(self):
                path = self.path.split("?")[0]
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                hub.requests.append(("POST", path, None))
                repo, revision = path.removeprefix("/api/models/").split("/paths-info/")
                if hub.paths_info_down or revision != commit_of(repo):
                    self.send_response(503 if hub.paths_info_down else 404)
                    self.end_headers()
                    return
                entries = []
                for file in form["paths"]:
                    key = f"{repo}/{file}"
                    if key in hub.files:
                        data = hub.files[key]
                        entry = {"type": "file", "path": file, "size": len(data), "oid": git_blob_id(data)}
                        if key not in hub.small:
                            entry["lfs"] = {"oid": hub.sha256(key), "size": len(data), "pointerSize": 134}
                        entries.append(entry)
                body = json.dumps(entries).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sha256(self, key: str) -> str:
        return self.published.get(key) or hashlib.sha256(self.files[key]).hexdigest()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


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


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (lambda official: torch_bytes(torch.zeros(80)), "1897 bytes, expected 1067"),
        (lambda official: bytes(len(official)), "sha256"),  # right size, wrong bytes
    ],
)
def test_github_asset_with_wrong_content_is_rejected(hub, tmp_path, reference_dir, content, complaint):
    hub.files["raw/mel_norms.pth"] = content((reference_dir / "mel_norms.pth").read_bytes())
    with pytest.raises(ModelDownloadError, match=complaint):
        make_store(hub, tmp_path).get("mel_norms.pth")
    assert not (tmp_path / "models" / "mel_norms.pth").exists()
    assert not (tmp_path / "models" / "mel_norms.pth.source.json").exists()


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


# --- verification against the checksum the hub publishes ------------------------------------------


def test_download_is_pinned_verified_and_its_revision_recorded(hub, tmp_path):
    payload = torch_bytes({"w": torch.ones(4)})
    hub.files["Manmay/tortoise-tts/vocoder.pth"] = payload
    path = make_store(hub, tmp_path).get("vocoder.pth")
    commit = commit_of("Manmay/tortoise-tts")
    assert ("GET", f"/Manmay/tortoise-tts/resolve/{commit}/vocoder.pth", None) in hub.requests
    lookup = ("POST", f"/api/models/Manmay/tortoise-tts/paths-info/{commit}")
    assert any(r[:2] == lookup for r in hub.requests)
    record = read_record(path)
    assert record.verified and record.revision == commit and record.repo == "Manmay/tortoise-tts"
    assert record.sha256 == hashlib.sha256(payload).hexdigest() and record.size == len(payload)
    assert (tmp_path / "models" / "vocoder.pth.source.json").exists()


def test_content_not_matching_the_published_checksum_is_refused_and_deleted(hub, tmp_path):
    hub.files["Manmay/tortoise-tts/clvp2.pth"] = torch_bytes({"w": torch.ones(5)})
    hub.published["Manmay/tortoise-tts/clvp2.pth"] = "ab" * 32  # the hub says another file
    with pytest.raises(ModelDownloadError, match="sha256") as e:
        make_store(hub, tmp_path).get("clvp2.pth")
    assert "clvp2.pth" in str(e.value) and "deleted" in str(e.value) and "Manmay/tortoise-tts" in str(e.value)
    assert not (tmp_path / "models" / "clvp2.pth").exists()
    assert not (tmp_path / "models" / "clvp2.pth.source.json").exists()


def test_file_stored_without_lfs_is_checked_by_its_git_blob_id(hub, tmp_path):
    payload = torch_bytes({"w": torch.ones(2)})
    hub.files["Manmay/tortoise-tts/rlg_auto.pth"] = payload
    hub.small.add("Manmay/tortoise-tts/rlg_auto.pth")
    assert read_record(make_store(hub, tmp_path).get("rlg_auto.pth")).verified
    hub.files["Manmay/tortoise-tts/rlg_diffuser.pth"] = payload
    hub.small.add("Manmay/tortoise-tts/rlg_diffuser.pth")
    hub.truncate_next.add("Manmay/tortoise-tts/rlg_diffuser.pth")  # short body, complete as far as HTTP knows
    with pytest.raises(ModelDownloadError):
        make_store(hub, tmp_path).get("rlg_diffuser.pth")
    assert not (tmp_path / "models" / "rlg_diffuser.pth").exists()


def test_fallback_repo_download_records_its_own_revision(hub, tmp_path):
    hub.files["jbetker/tortoise-tts-v2/.models/cvvp.pth"] = torch_bytes({"w": torch.ones(3)})
    record = read_record(make_store(hub, tmp_path).get("cvvp.pth"))
    assert record.repo == "jbetker/tortoise-tts-v2" and record.path == ".models/cvvp.pth"
    assert record.revision == commit_of("jbetker/tortoise-tts-v2") and record.verified


def test_failed_checksum_lookup_keeps_the_file_with_a_note_and_verifies_it_next_time(hub, tmp_path, caplog):
    payload = torch_bytes({"w": torch.ones(6)})
    hub.files["Manmay/tortoise-tts/diffusion_decoder.pth"] = payload
    hub.paths_info_down = True
    path = make_store(hub, tmp_path).get("diffusion_decoder.pth")
    assert path.read_bytes() == payload
    record = read_record(path)
    assert not record.verified and "could not be looked up" in record.note
    assert "next start" in caplog.text
    # an offline start uses the file as it is, without touching the network
    hub.requests.clear()
    assert ModelStore(tmp_path / "models", offline=True).get("diffusion_decoder.pth") == path
    assert hub.requests == [] and not read_record(path).verified
    # the next online start looks the checksum up again and records the verification
    hub.paths_info_down = False
    make_store(hub, tmp_path).get("diffusion_decoder.pth")
    assert read_record(path).verified and read_record(path).note == ""
    assert not any(r[0] == "GET" for r in hub.requests)  # verified in place, not downloaded again


def test_unverified_file_that_turns_out_wrong_is_deleted_and_fetched_again(hub, tmp_path, caplog):
    good = torch_bytes({"w": torch.ones(7)})
    key = "Manmay/tortoise-tts/autoregressive.pth"
    hub.files[key] = torch_bytes({"w": torch.zeros(7)})  # a bad copy served while the lookup is down
    hub.paths_info_down = True
    path = make_store(hub, tmp_path).get("autoregressive.pth")
    assert not read_record(path).verified
    hub.files[key] = good
    hub.paths_info_down = False
    hub.published[key] = hashlib.sha256(good).hexdigest()
    assert make_store(hub, tmp_path).get("autoregressive.pth").read_bytes() == good
    assert read_record(path).verified
    assert "does not match the checksum" in caplog.text and "deleting" in caplog.text


def test_lookup_failure_still_catches_a_short_download(hub, tmp_path):
    key = "Manmay/tortoise-tts/vocoder.pth"
    hub.files[key] = torch_bytes({"w": torch.ones(100)})
    hub.paths_info_down = True
    hub.truncate_next.add(key)
    with pytest.raises(ModelDownloadError, match="bytes, expected"):
        make_store(hub, tmp_path).get("vocoder.pth")
    assert not (tmp_path / "models" / "vocoder.pth").exists()


# --- the first-run error: every missing file, at once ---------------------------------------------


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class HangUpServer:
    """Accepts each connection and closes it without a word (a broken network path), counting them."""

    def __init__(self):
        import socket

        self.accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("kind", ["refused", "hangs up"])
def test_unreachable_hub_fails_fast_listing_every_missing_file(tmp_path, kind):
    server = HangUpServer() if kind == "hangs up" else None
    url = server.url if server else closed_port_url()
    store = ModelStore(tmp_path / "models", offline=False, hf_endpoint=url, asset_base_url=url + "/raw")
    started = time.monotonic()
    with pytest.raises(ModelDownloadError) as e:
        store.ensure(INFERENCE_FILES)
    assert time.monotonic() - started < 5
    if server:
        server.close()
        assert server.accepted == 1  # one try, no retries, no attempt per file
    msg = str(e.value)
    assert "cannot be reached" in msg and "Only Load Models Locally" in msg
    for name in GENERATION_FILES:
        assert f"{name} (" in msg and str(tmp_path / "models" / name) in msg
    assert len(GENERATION_FILES) == 9 and "dvae.pth" not in msg


def test_offline_error_also_lists_the_files_needed_later(tmp_path, reference_dir):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tokenizer.json").write_bytes((reference_dir / "tokenizer.json").read_bytes())
    with pytest.raises(ModelDownloadError) as e:
        ModelStore(models, offline=True).ensure(INFERENCE_FILES)
    msg = str(e.value)
    assert "8 model file(s) are missing" in msg and "tokenizer.json (" not in msg
    assert "Needed later" in msg and "rlg_auto.pth" in msg and "cvvp.pth" in msg
