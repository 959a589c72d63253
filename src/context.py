"""AppContext: the settings and the lazily built services of one running app. Created once in app.py
and passed to every tab's `build(ctx)`; tests build one around a tiny or fake TextToSpeech."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from src.consistency import ConsistencyGuard, guard_from_models_dir
from src.engine import Loader, TTSEngine, loader_from_settings
from src.fast_generate import FastGenerator
from src.generate import Generator
from src.job_runner import JobRunner
from src.jobs import JobQueue
from src.paths import AppPaths
from src.projects import ProjectService
from src.qa import SegmentChecker
from src.settings import AppSettings, GenerateDefaults, load_generate_defaults
from src.token_preview import TokenizerSource
from src.training.asr import Transcriber, create_transcriber
from src.training.runner import TrainRunner
from src.voices import VoiceLibrary

# (backend, model) -> a Whisper transcriber; tests inject one that needs no model.
TranscriberFactory = Callable[[str, str], Transcriber]

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    """Settings plus services; each service is built on first access, building does no heavy work.

    Attributes:
        paths: the installation's folders.
        settings: the settings in effect for this run (file + command-line flags). The Settings tab
            replaces it; services read it at each use.
        tts_loader: builds the TextToSpeech; default: the official models per `settings`. Tests
            inject a loader returning tiny models.
        tts_options: GenerationOptions fields passed to every generation (tests shorten outputs).
        startup_warnings: problems found while reading config files, to show once in the UI.
        transcriber_factory: builds the Whisper transcriber for Prepare Dataset from (backend,
            model); default `src.training.asr.create_transcriber` (models cached in models/whisper/).
        trainer_args: extra `python -m tortoise.training` flags for every run (tests pass tiny
            model sizes); trainer_env: environment variables added for the trainer.
    """

    paths: AppPaths
    settings: AppSettings = field(default_factory=AppSettings)
    tts_loader: Loader | None = None
    tts_options: dict[str, Any] = field(default_factory=dict)
    startup_warnings: tuple[str, ...] = ()
    transcriber_factory: TranscriberFactory | None = None
    trainer_args: tuple[str, ...] = ()
    trainer_env: dict[str, str] = field(default_factory=dict)
    runtime_notes: list[str] = field(default_factory=list)

    def current_settings(self) -> AppSettings:
        """The settings as they are now (passed to services as a getter so changes apply)."""
        return self.settings

    @functools.cached_property
    def engine(self) -> TTSEngine:
        """The TTS engine; the model loads on first generation (or `engine.load_in_background`)."""
        loader = self.tts_loader or loader_from_settings(self.paths, self.settings)
        return TTSEngine(loader, default_options=self.tts_options)

    @functools.cached_property
    def voices(self) -> VoiceLibrary:
        return VoiceLibrary(self.paths)

    @functools.cached_property
    def generator(self) -> Generator:
        return Generator(self.paths, self.engine, self.voices, self.current_settings)

    @functools.cached_property
    def tokenizers(self) -> TokenizerSource:
        """TorToiSe's tokenizer for previews: the loaded model's, else models/tortoise/tokenizer.json."""
        engine = self.engine

        def loaded() -> Any:
            return engine.get() if engine.is_loaded else None

        return TokenizerSource(self.paths.tortoise_models_dir, loaded)

    @functools.cached_property
    def fast_generator(self) -> FastGenerator:
        """Fast mode (one sample, HiFi-GAN, streamed) over the same engine, voices and settings."""
        return FastGenerator(self.generator)

    @functools.cached_property
    def train_runner(self) -> TrainRunner:
        """Starts, stops and watches training subprocesses (they outlive the app; see Reconnect)."""
        return TrainRunner(self.paths, extra_args=self.trainer_args, env=self.trainer_env)

    @functools.cached_property
    def projects(self) -> ProjectService:
        """Long-form projects; QA transcribes with the Whisper backend and model chosen in Settings."""

        def checker() -> SegmentChecker:
            return SegmentChecker(
                lambda: self.create_transcriber(self.settings.whisper_backend, self.settings.whisper_model)
            )

        def guard() -> ConsistencyGuard:
            offline = True if self.settings.models_local_only else None
            return guard_from_models_dir(self.paths.tortoise_models_dir, offline=offline)

        return ProjectService(self.paths, self.generator, self.current_settings, checker, guard)

    @functools.cached_property
    def job_queue(self) -> JobQueue:
        """The persistent queue of project renders and generations (`config/jobs.sqlite`)."""
        return JobQueue(self.paths.config_dir / "jobs.sqlite")

    @functools.cached_property
    def job_runner(self) -> JobRunner:
        """Works the queue (`app.serve` starts it, which resumes interrupted jobs). Workers: a Ray cluster
        when Settings name one and it answers, else one per visible GPU."""
        from src.workers import connect_ray, engine_factory, local_workers

        workers = []
        if self.settings.ray_address.strip():
            backend = connect_ray(
                self.settings.ray_address.strip(), self.settings.ray_workers, root=self.paths.root,
                settings=self.settings, tts_options=self.tts_options,
            )  # fmt: skip
            workers = list(backend.workers)
            self.runtime_notes.append(backend.message)
            (log.info if workers else log.warning)("%s", backend.message)
        if not workers:
            build = engine_factory(self.paths, self.settings, self.tts_options)
            if self.tts_loader is not None:
                loader = self.tts_loader
                build = lambda device: TTSEngine(loader, default_options=self.tts_options)  # noqa: E731
            workers = local_workers(self.generator, self.settings, build)
        return JobRunner(self.job_queue, self.projects, self.generator, workers,
                         concurrency=max(self.settings.concurrency_count, 1))  # fmt: skip

    def create_transcriber(self, backend: str, model: str) -> Transcriber:
        """A Whisper transcriber for Prepare Dataset (nothing is loaded until it transcribes)."""
        if self.transcriber_factory is not None:
            return self.transcriber_factory(backend, model)
        return create_transcriber(
            backend, model, download_root=self.paths.models_dir / "whisper"
        )

    def generate_defaults(self) -> GenerateDefaults:
        """The Generate tab's last values from config/generate.json (defaults if missing/broken)."""
        loaded = load_generate_defaults(self.paths.generate_file)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        return loaded.value

    def update_settings(self, settings: AppSettings) -> None:
        """Use new settings from now on. A device/model change takes effect at the next TTS load;
        the Settings tab's (Re)Load TTS calls `engine.reload` with `loader_from_settings`."""
        self.settings = settings
        if self.tts_loader is None:
            self.engine.set_loader(loader_from_settings(self.paths, settings))

    def reload_tts(self) -> Any:
        """(Re)Load TTS: unload the model and load it again with the current settings (AR model,
        device, Low VRAM) without restarting the app. Waits for a running job first."""
        loader = self.tts_loader or loader_from_settings(self.paths, self.settings)
        return self.engine.reload(loader)
