"""Projects from multi-voice scripts and marked-up text: per-row voices, speeds and pauses, the lexicon
applied to what the model reads, and the voice-consistency scores and flags of a project's takes."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from src.errors import InvalidInput, MissingRequirement
from src.lexicon import global_lexicon_path, project_lexicon_path, save_lexicon
from src.metadata import read_metadata
from src.projects.render import Takes
from src.projects.state import COMBINED_FILE, DONE, FAILED, STATE_FILE
from src.projects.voice_match import CONSISTENCY, DRIFT_FLAG, consistency_checks
from src.qa import QaSettings
from src.script import ScriptVoicesError
from src.settings import AppSettings, GenerateDefaults
from src.ui import tab_projects
from tests.app_doubles import TINY_TTS_OPTIONS, make_context, make_voice, save_wav, tiny_tts
from tests.src.projects.test_service import render_all

RATE = 24000
FRAME = 256  # one mel frame at 24 kHz: the tolerance on silence lengths


def rows_of(project):
    return [(row.text, row.voice, row.speed, row.pause_s) for row in project.rows]


def test_a_script_becomes_rows_with_their_voices_speeds_and_pauses(ctx, service, values):
    make_voice(ctx.paths.voices_dir, "bob", (1.0,))
    script = (
        "# chapter one\n"
        "Hello there. How are you?\n"
        "bob: Fine. [pause 0.8s] {speed 0.5}Very slowly.{/speed} Then fast.\n"
        "amy: Good."
    )
    project = service.create("talk", "amy", script, values, pause_s=0.3, script=True)
    assert rows_of(project) == [
        ("Hello there.", None, 1.0, 0.3),
        ("How are you?", None, 1.0, 0.3),
        ("Fine.", "bob", 1.0, 0.8),
        ("Very slowly.", "bob", 0.5, 0.0),  # the rest of the line follows with no gap
        ("Then fast.", "bob", 1.0, 0.3),
        ("Good.", None, 1.0, 0.3),
    ]
    saved = json.loads((service.folder("amy", "talk") / STATE_FILE).read_text())
    assert [row["speed"] for row in saved["rows"]] == [1.0, 1.0, 1.0, 0.5, 1.0, 1.0]


def test_two_voices_render_one_combined_file_and_each_take_names_its_voice(ctx, service, tts, values):
    make_voice(ctx.paths.voices_dir, "bob", (1.0,))
    service.create("talk", "amy", "amy: One.\nbob: {speed 0.5}Two two.{/speed} [pause 0.8s]\nThree.",
                   values, pause_s=0.2, script=True)  # fmt: skip
    project = render_all(service, "talk")
    folder = service.folder("amy", "talk")
    voices = [read_metadata(folder / row.chosen_candidate.file).voice for row in project.rows]
    assert voices == ["amy", "bob", "bob"] and [r.voice for r in project.rows] == [None, "bob", "bob"]
    takes = [sf.info(str(folder / row.chosen_candidate.file)).frames for row in project.rows]
    combined = sf.read(str(folder / COMBINED_FILE), dtype="float32")[0]
    assert len(combined) == takes[0] + round(0.2 * RATE) + takes[1] + round(0.8 * RATE) + takes[2]
    # the speed-0.5 row lasts twice as long as the same text and seed rendered unstretched
    plain = tts.tts("Two two.", seed=project.rows[1].candidates[0].seed, k=1).waveforms[0].shape[-1]
    assert takes[1] / plain == pytest.approx(2.0, rel=0.02)
    # the 0.8 s pause after it is silence of that length, within one frame
    start = takes[0] + round(0.2 * RATE) + takes[1]
    gap = combined[start - FRAME : start + round(0.8 * RATE) + FRAME]
    silent = np.flatnonzero(np.abs(gap) < 1e-4)
    assert abs((silent[-1] - silent[0] + 1) - 0.8 * RATE) <= FRAME


@pytest.mark.parametrize(
    "script, message",
    [
        ("amy:\nbob:\n", "only speaker labels"),
        ("amy: Hello.\nzed: Hi.\nghost: Boo.", "zed.*line 2.*\n.*ghost.*line 3"),
        ("amy: Hello.\nempty: Hi.", "voices/empty/ has no clips"),
        ("amy: Say [pause x] now.", "Line 1: markup error at character 10"),
        ("amy: {speed 0.9}Never closed.", "never closed"),
        ("amy: {speed 3.0}Too fast.{/speed}", "character 6: 3x is outside 0.5x-2x"),
        ("amy: [sad {speed 0.9}] Hello.", "character"),
    ],
)
def test_bad_scripts_are_refused_before_anything_is_created(ctx, service, tts, values, script, message):
    (ctx.paths.voices_dir / "empty").mkdir()
    with pytest.raises(InvalidInput, match=message) as caught:
        service.create("talk", "amy", script, values, script=True)
    assert not service.folder("amy", "talk").exists() and tts.calls == []
    if "zed" in script:
        assert isinstance(caught.value, ScriptVoicesError) and len(caught.value.problems) == 2


def test_plain_text_keeps_colons_and_reads_markup(service, values):
    text = "Note: this is text. [pause 1.5s] {speed 1.25}Quick.{/speed}"
    project = service.create("plain", "amy", text, values)
    assert rows_of(project) == [
        ("Note: this is text.", None, 1.0, 1.5),
        ("Quick.", None, 1.25, 0.3),
    ]


def test_the_lexicon_changes_what_the_model_reads_not_the_text(ctx, service, tts, values):
    save_lexicon(global_lexicon_path(ctx.paths.config_dir), [["SQL", "sequel"], ["Nguyen", "win"]])
    service.create("lex", "amy", "Mr Nguyen knows SQL. Nguyenville and MySQL stay.", values)
    folder = service.folder("amy", "lex")
    save_lexicon(project_lexicon_path(folder), [["knows", "nose"]])  # the project's own entry
    project = render_all(service, "lex")
    assert [text for text, _ in tts.calls] == ["Mr win nose sequel.", "Nguyenville and MySQL stay."]
    assert [row.text for row in project.rows] == ["Mr Nguyen knows SQL.", "Nguyenville and MySQL stay."]
    meta = read_metadata(folder / project.rows[0].chosen_candidate.file)
    assert meta.text == "Mr Nguyen knows SQL."


def test_a_looping_project_lexicon_fails_the_row_with_a_message(ctx, service, tts, values):
    service.create("lex", "amy", "Alpha beta.", values)
    folder = service.folder("amy", "lex")
    project_lexicon_path(folder).write_text(json.dumps(
        {"entries": [{"word": "alpha", "respelling": "beta"}, {"word": "beta", "respelling": "alpha"}]}
    ))  # fmt: skip
    row = service.open("amy", "lex").project.rows[0]
    with pytest.raises(InvalidInput, match="loop"):
        service.render_row("amy", "lex", row.id)
    row = service.open("amy", "lex").project.rows[0]
    assert row.status == FAILED and "loop" in row.error and tts.calls == []


def test_a_hand_edited_speed_out_of_range_falls_back(service, values):
    service.create("speedy", "amy", "One.", values)
    folder = service.folder("amy", "speedy")
    state = json.loads((folder / STATE_FILE).read_text())
    state["rows"][0]["speed"] = 9.0
    (folder / STATE_FILE).write_text(json.dumps(state))
    change = service.open("amy", "speedy")
    assert change.project.rows[0].speed == 1.0 and any("speed" in note for note in change.notes)


def test_consistency_is_a_note_when_the_guard_cannot_run(ctx, service, values):
    """cvvp.pth is missing and the models are local only: the takes are kept, the note says why."""
    ctx.settings = AppSettings(output_sample_rate=24000, models_local_only=True)
    service.create("cv", "amy", "One.", values, qa=QaSettings(consistency=True))
    row = service.open("amy", "cv").project.rows[0]
    change = service.render_row("amy", "cv", row.id)
    row = change.project.rows[0]
    assert row.status == DONE and CONSISTENCY not in row.candidates[0].scores
    assert any("voice consistency was not checked" in note for note in change.notes)


@pytest.mark.slow
def test_a_row_rendered_in_another_voice_is_flagged_and_offered_for_regeneration(tmp_path, tiny_models):
    from src.consistency import ConsistencyGuard
    from tests.src.test_consistency import RATE as VOICE_RATE
    from tests.src.test_consistency import VOICE_A, VOICE_B, fitted_tiny_cvvp, render

    ctx = make_context(tmp_path, settings=AppSettings(output_sample_rate=24000))
    clips = {"a": [render(VOICE_A, "x" * 60, 1000 + i) for i in range(3)],
             "b": [render(VOICE_B, "x" * 60, 2000 + i) for i in range(3)]}  # fmt: skip
    for i, clip in enumerate(clips["a"]):
        (ctx.paths.voices_dir / "anna").mkdir(parents=True, exist_ok=True)
        save_wav(ctx.paths.voices_dir / "anna" / f"clip{i}.wav", clip, VOICE_RATE)
    mel_norms = tiny_models.mel_norms
    guard = ConsistencyGuard(lambda: fitted_tiny_cvvp(clips, mel_norms), None, mel_norms)
    ctx.projects._guard_factory = lambda: guard
    texts = ["Hello there.", "How are you today?", "It is late.", "Come in, please.", "Thank you.",
             "Good night, everyone.", "See you soon."]  # fmt: skip

    def renderer(request):  # the voice's audio, except row 5, rendered with the other voice's latents
        voice = VOICE_B if request.text == "Thank you." else VOICE_A
        wave = render(voice, request.text, request.seed).reshape(-1).numpy()
        return Takes((wave,), request.seed, 0.1, sample_rate=VOICE_RATE)

    values = GenerateDefaults(seed=7, candidates=1, num_autoregressive_samples=2)
    project = ctx.projects.create("story", "anna", "\n".join(texts), values, qa=QaSettings(consistency=True))
    for row in project.rows:
        ctx.projects.render_row("anna", "story", row.id, renderer=renderer)
    project = ctx.projects.open("anna", "story").project
    checks = consistency_checks(project)
    assert [project.rows.index(project.row(i)) for i, c in checks.items() if c.flagged] == [4]
    assert ctx.projects.flagged("anna", "story") == [project.rows[4].id]
    table = tab_projects.row_table(project)
    score = checks[project.rows[4].id].score
    assert DRIFT_FLAG in table[4][6] and table[4][5].startswith(f"{score:.3f} (z -")
    assert [line[0] for line in tab_projects.row_table(project, flagged_only=True)] == [5]
    assert "1 drifting from the voice" in tab_projects.summary(project)
    job = ctx.job_runner.enqueue_project("anna/story", ctx.projects.flagged("anna", "story"), new_seed=True)
    assert job is not None and ctx.job_queue.active_items("anna/story") == {project.rows[4].id}


@pytest.mark.slow
def test_a_two_voice_script_project_with_the_tiny_models(tmp_path, tiny_models):
    ctx = make_context(tmp_path, tiny_tts(tiny_models), tts_options=TINY_TTS_OPTIONS,
                       settings=AppSettings(output_sample_rate=24000))  # fmt: skip
    make_voice(ctx.paths.voices_dir, "alice", (1.5,), seed=1)
    make_voice(ctx.paths.voices_dir, "bob", (1.5,), seed=5)
    values = GenerateDefaults(seed=3, candidates=1, num_autoregressive_samples=2, diffusion_iterations=2)
    ctx.projects.create("duet", "alice", "alice: Hi there.\nbob: Bye now.", values, script=True)
    project = render_all_voices(ctx, "alice", "duet")
    folder = ctx.projects.folder("alice", "duet")
    voices = [read_metadata(folder / row.chosen_candidate.file).voice for row in project.rows]
    assert voices == ["alice", "bob"]
    frames = sum(sf.info(str(folder / row.chosen_candidate.file)).frames for row in project.rows)
    assert sf.info(str(folder / COMBINED_FILE)).frames == frames + round(project.rows[0].pause_s * RATE) > 0
    for voice in ("alice", "bob"):  # each row rendered with its own voice's cached latents
        assert list((ctx.paths.voices_dir / voice).glob("cond_latents_*.pth"))


def render_all_voices(ctx, voice, name):
    for row in ctx.projects.open(voice, name).project.rows:
        ctx.projects.render_row(voice, name, row.id)
    return ctx.projects.open(voice, name).project


def test_stretched_takes_keep_their_pitch():
    """The speed markup's stretch keeps the pitch: the main frequency of a tone stays where it was."""
    from src.markup import stretch

    t = torch.arange(RATE) / RATE
    tone = torch.sin(2 * torch.pi * 220 * t)
    slow = stretch(tone, 0.5).numpy()
    spectrum = np.abs(np.fft.rfft(slow[RATE // 2 : RATE // 2 + RATE // 2]))
    assert len(slow) == 2 * RATE and abs(np.argmax(spectrum) * 2 - 220) <= 4


def test_editing_a_segment_reads_its_markup(service, values):
    project = service.create("edit", "amy", "One. Two.", values)
    first, second = (row.id for row in project.rows)
    change = service.edit_text("amy", "edit", first, "{speed 0.8}One again.{/speed} [pause 1.2s]")
    row = change.project.row(first)
    assert (row.text, row.speed, row.pause_s) == ("One again.", 0.8, 1.2)
    change = service.edit_text("amy", "edit", first, "One again, plainly.")  # no markup: speed and pause stay
    row = change.project.row(first)
    assert (row.text, row.speed, row.pause_s) == ("One again, plainly.", 0.8, 1.2)
    change = service.insert_row("amy", "edit", second, "{speed 1.5}Three.{/speed}")
    row = change.project.rows[2]
    assert (row.text, row.speed, row.pause_s) == ("Three.", 1.5, 0.3)
    for bad, message in [
        ("Half. [pause 1s] Other half.", "several segments"),
        ("[pause 1s] Late start.", "several segments"),
        ("Fast {speed 1.5}and{/speed} slow.", "several segments"),
        ("{speed 9}No.{/speed}", "outside 0.5x-2x"),
        ("[pause 2s]", "needs words"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            service.edit_text("amy", "edit", first, bad)
    assert service.open("amy", "edit").project.row(first).text == "One again, plainly."


def test_a_full_disk_fails_the_row_before_rendering(ctx, service, tts, values):
    service.create("disk", "amy", "One.", values)
    ctx.generator.disk_usage = lambda path: type("Usage", (), {"free": 10 * 2**20})()  # 10 MB free
    row = service.open("amy", "disk").project.rows[0]
    with pytest.raises(MissingRequirement, match="Not enough disk space"):
        service.render_row("amy", "disk", row.id)
    row = service.open("amy", "disk").project.rows[0]
    assert tts.calls == [] and row.status == FAILED and "free" in row.error


class CuttingTTS:
    """TextToSpeech's `redact` for the projects' SeededTTS: cuts the first half of a take (or fails)."""

    def __init__(self, tts, fail=False):
        self.tts, self.fail, self.redacted = tts, fail, []

    def __call__(self, wav, text):
        self.redacted.append(text)
        if self.fail:
            raise RuntimeError("no aligner here")
        return wav[..., wav.shape[-1] // 2 :]


class RecordingChecker:
    """The QA checker's interface: records the text each take is checked against."""

    def __init__(self):
        self.texts = []

    def check(self, text, wave, sample_rate, qa):
        from src.qa import QaReport

        self.texts.append(text)
        return QaReport(transcript=text, wer=0.0)


def test_bracketed_words_are_cut_from_takes_and_qa_does_not_expect_them(ctx, service, tts, values):
    cutter = CuttingTTS(tts)
    tts.redact = cutter
    checker = RecordingChecker()
    service._checker = checker
    service.create("sad", "amy", "[I am sad,] Hello there.", values, qa=QaSettings(enabled=True))
    row = service.open("amy", "sad").project.rows[0]
    project = service.render_row("amy", "sad", row.id).project
    assert cutter.redacted == ["[I am sad,] Hello there."]
    whole = tts.tts("[I am sad,] Hello there.", seed=project.rows[0].candidates[0].seed, k=1).waveforms[0]
    take = sf.info(str(service.folder("amy", "sad") / project.rows[0].chosen_candidate.file)).frames
    assert take == whole.shape[-1] - whole.shape[-1] // 2
    assert checker.texts == ["Hello there."]


def test_a_failing_aligner_keeps_the_take_whole_with_a_note(ctx, service, tts, values):
    tts.redact = CuttingTTS(tts, fail=True)
    service.create("sad", "amy", "[I am sad,] Hello there.", values)
    row = service.open("amy", "sad").project.rows[0]
    change = service.render_row("amy", "sad", row.id)
    assert change.project.rows[0].status == DONE
    assert any("could not be cut" in note for note in change.notes)
    # a background render has no pop-up: the table's status column carries the note
    project = service.open("amy", "sad").project
    assert tab_projects.row_table(project)[0][3].startswith("done: The [bracketed] words could not be cut")


def test_redaction_off_keeps_the_brackets_spoken(ctx, service, tts):
    cutter = CuttingTTS(tts)
    tts.redact = cutter
    values = GenerateDefaults(seed=3, num_autoregressive_samples=2, candidates=1, enable_redaction=False)
    service.create("said", "amy", "[I am sad,] Hello there.", values)
    row = service.open("amy", "said").project.rows[0]
    service.render_row("amy", "said", row.id)
    assert cutter.redacted == []
