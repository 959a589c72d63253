"""Where project segments render: locally one worker per visible GPU (each with its own engine), or, with
the optional Ray backend, one Ray actor per worker on an existing cluster. Ray is never required: when it is
not installed or its cluster cannot be reached, the app says so and renders locally.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.engine import Loader, TTSEngine, loader_from_settings
from src.generate import GenerateRequest, Generator
from src.job_runner import Worker
from src.paths import AppPaths
from src.projects.render import Takes, WorkerLost, render_takes
from src.settings import AppSettings
from src.voices import VoiceLibrary

log = logging.getLogger(__name__)

RAY_PIN = "ray==2.60.0"


def visible_gpus() -> int:
    """How many CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies)."""
    from tortoise import cuda_device_count

    return cuda_device_count()


def local_workers(
    generator: Generator,
    settings: AppSettings,
    engine_for: Callable[[str], TTSEngine],
    gpus: int | None = None,
) -> list[Worker]:
    """One worker per visible GPU: the app's engine serves the first, `engine_for("cuda:N")` the others.

    A device pinned in Settings (e.g. `cuda:1`) keeps everything on that device: one worker.
    """
    count = visible_gpus() if gpus is None else gpus
    first = Worker("cuda:0" if count > 1 else "local", None, generator.engine.cancel)
    if count <= 1 or (settings.device_override or "auto") not in ("auto", "cuda"):
        return [first]
    workers = [first]
    for index in range(1, count):
        engine = engine_for(f"cuda:{index}")
        name = f"cuda:{index}"
        workers.append(Worker(name, _engine_renderer(generator, engine, name), engine.cancel))
    return workers


def _engine_renderer(
    generator: Generator, engine: TTSEngine, name: str
) -> Callable[[GenerateRequest], Takes]:
    return lambda request: render_takes(generator, request, engine=engine, worker=name)


def engine_factory(
    paths: AppPaths, settings: AppSettings, options: dict[str, Any]
) -> Callable[[str], TTSEngine]:
    """Builds an engine on a given device with the app's model settings (loaded on first use)."""

    def build(device: str) -> TTSEngine:
        pinned = dataclasses.replace(settings, device_override=device)
        return TTSEngine(loader_from_settings(paths, pinned), default_options=options)

    return build


# ---------------------------------------------------------------------- Ray


def import_loader(spec: str) -> Loader:
    """`package.module:function` -> that function, which returns a TextToSpeech (for Ray actors)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class RenderService:
    """What a Ray actor holds: its own engine, voices and Generator over the same app folder layout.

    Args:
        root: the app folder as seen on the worker's machine (voices/ and models/ must be there).
        settings: the app's settings as a dict.
        tts_options: GenerationOptions fields for every generation.
        loader: `module:function` building the TextToSpeech; empty = the official models per settings.
        name: the worker's name.
    """

    def __init__(
        self,
        root: str,
        settings: dict[str, Any],
        tts_options: dict[str, Any],
        loader: str = "",
        name: str = "ray",
    ) -> None:
        self.name = name
        paths = AppPaths.from_root(Path(root))
        app_settings = AppSettings(**settings)
        build = import_loader(loader) if loader else loader_from_settings(paths, app_settings)
        engine = TTSEngine(build, default_options=tts_options)
        self.generator = Generator(paths, engine, VoiceLibrary(paths), lambda: app_settings)

    def render(self, request: dict[str, Any]) -> Takes:
        return render_takes(self.generator, GenerateRequest(**request), worker=self.name)

    def cancel(self) -> bool:
        return self.generator.engine.cancel()


@dataclass(frozen=True)
class RayBackend:
    """Ray workers for the job runner, or the reason they are not available (then render locally)."""

    workers: tuple[Worker, ...]
    message: str


def connect_ray(
    address: str,
    count: int,
    *,
    root: Path,
    settings: AppSettings,
    tts_options: dict[str, Any],
    loader: str = "",
    init_kwargs: dict[str, Any] | None = None,
) -> RayBackend:
    """Connect to a Ray cluster and start `count` render actors on it.

    Args:
        address: `ray://host:10001`, `host:6379`, `auto` (a cluster started on this machine) or `local`
            (start a private Ray instance here).
        count: how many actors (each takes one CPU, or one GPU when the cluster has them).
        root / settings / tts_options / loader: passed to each RenderService.

    Returns:
        The workers, or none and a message saying why (Ray missing, cluster unreachable).
    """
    try:
        import ray
    except ImportError:
        return RayBackend(
            (),
            f"The Ray backend is configured but Ray is not installed ('pip install {RAY_PIN}'); "
            "rendering on this machine.",
        )
    unreachable = _unreachable(address)
    if unreachable:
        return RayBackend(
            (),
            f"The Ray cluster at '{address}' could not be reached ({unreachable}); "
            "rendering on this machine.",
        )
    try:
        if not ray.is_initialized():
            kwargs = dict(init_kwargs or {})
            if address != "local":
                kwargs["address"] = address
            ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        actor_class = ray.remote(
            num_cpus=1, num_gpus=1 if gpus >= count else 0, max_restarts=1, max_concurrency=2
        )(RenderService)
        values = dataclasses.asdict(settings)
        actors = [
            actor_class.remote(str(root), values, dict(tts_options), loader, f"ray-{i}") for i in range(count)
        ]
    except Exception as error:  # boundary: any failure to reach the cluster means "render locally"
        log.warning("Ray at %s is unreachable", address, exc_info=True)
        return RayBackend(
            (),
            f"The Ray cluster at '{address}' could not be reached ({type(error).__name__}: "
            f"{error}); rendering on this machine.",
        )
    workers = tuple(
        Worker(f"ray-{i}", _actor_renderer(actor), _actor_cancel(actor)) for i, actor in enumerate(actors)
    )
    return RayBackend(workers, f"Rendering on Ray at '{address}' with {count} worker(s).")


def _unreachable(address: str, timeout_s: float = 5.0) -> str:
    """Why `host:port` (or `ray://host:port`) does not answer, or "" when it does (or is local).

    Checked with a plain TCP connection first, because `ray.init` waits a long time on a dead address."""
    if address in ("auto", "local"):
        return ""
    target = address.removeprefix("ray://").rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return f"'{address}' is not host:port, ray://host:port, auto or local"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return ""
    except OSError as error:
        return f"nothing answers at {host}:{port}: {error}"


def _actor_renderer(actor: Any) -> Callable[[GenerateRequest], Takes]:
    def render(request: GenerateRequest) -> Takes:
        import ray

        values = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
        try:
            return ray.get(actor.render.remote(values))
        except (
            ray.exceptions.RayActorError,
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
        ) as error:
            raise WorkerLost(str(error).splitlines()[0] if str(error) else type(error).__name__) from error
        except ray.exceptions.RayTaskError as error:
            raise error.as_instanceof_cause() from None

    return render


def _actor_cancel(actor: Any) -> Callable[[], Any]:
    return lambda: actor.cancel.remote()
