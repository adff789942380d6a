"""The shared progress text (time spent, time left from per-step timing, inpainting's shortened runs explained)
and the "last outcome" note kept beside a button."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from facestudio.engine.generation import StepProgress
from facestudio.ui.common import PageProgress, SessionNotes, format_duration


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reporter(**kwargs):
    said = []
    clock = FakeClock()
    page = PageProgress(lambda fraction, desc: said.append((fraction, desc)), clock=clock, **kwargs)
    return page, clock, said


def test_time_left_comes_from_the_steps_after_the_first():
    page, clock, said = reporter()
    clock.now += 30  # loading models: counted as elapsed, not as step time
    page.step(StepProgress(0, 1, 1, 10))
    assert "estimating the time left" in said[-1][1] and "30 s elapsed" in said[-1][1]
    clock.now += 2
    page.step(StepProgress(0, 1, 2, 10))
    clock.now += 2
    page.step(StepProgress(0, 1, 3, 10))
    assert said[-1][1] == "Generating · step 3/10 · 34 s elapsed · about 14 s left"  # 7 steps x 2 s
    assert said[-1][0] == pytest.approx(0.3)
    assert "(2.0 s per step)" in page.summary()


def test_images_count_into_the_time_left_and_the_last_step_says_finishing():
    page, clock, said = reporter()
    page.step(StepProgress(0, 2, 1, 4))
    clock.now += 3
    page.step(StepProgress(0, 2, 2, 4))
    assert said[-1][1].endswith("image 1/2, step 2/4 · 3 s elapsed · about 18 s left")  # 6 steps x 3 s
    clock.now += 18
    page.step(StepProgress(1, 2, 4, 4))
    assert said[-1][1].endswith("finishing")


def test_inpainting_explains_a_run_shortened_by_denoise():
    page, _clock, said = reporter(requested_steps=30, denoise=0.6)
    page.step(StepProgress(0, 1, 3, 18))
    assert "step 3/18 (denoise 0.6 × 30 steps)" in said[-1][1]
    plain, _clock, said = reporter(requested_steps=30)
    plain.step(StepProgress(0, 1, 3, 30))
    assert "step 3/30 ·" in said[-1][1]


def test_a_new_stage_restarts_the_estimate():
    page, clock, said = reporter()
    page.step(StepProgress(0, 1, 1, 10))
    clock.now += 1
    page.step(StepProgress(0, 1, 2, 10))
    page.step(StepProgress(0, 1, 1, 5))  # a second stage counts from its own first step
    assert "estimating the time left" in said[-1][1]


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (42, "42 s"), (185, "3 min 05 s"),
                                               (3720, "1 h 02 min")])
def test_durations_read_as_people_say_them(seconds, text):
    assert format_duration(seconds) == text


def test_the_last_error_stays_as_the_sessions_note_and_sessions_are_apart():
    notes = SessionNotes()
    mine, theirs = gr.Request(), gr.Request()
    mine.session_hash, theirs.session_hash = "mine", "theirs"  # type: ignore[attr-defined]

    @notes.noting_errors
    def fails(request):
        raise gr.Error("The size must look like 512x768; got 'x'.")

    with pytest.raises(gr.Error):
        fails(mine)
    notes.put(theirs, "✓ 1 image(s) in 2 s")
    assert notes.get(mine) == "⚠️ **Error:** The size must look like 512x768; got 'x'."
    assert notes.get(theirs) == "✓ 1 image(s) in 2 s"
    assert notes.get(SimpleNamespace(session_hash="nobody")) == ""


def test_a_stage_with_its_own_step_count_is_not_explained_by_denoise():
    page, _clock, said = reporter(requested_steps=30, denoise=0.6)
    page.step(StepProgress(0, 1, 3, 50))
    assert "step 3/50 ·" in said[-1][1]
    page.step(StepProgress(0, 1, 1, 10))
    assert "step 1/10 ·" in said[-1][1]


def test_history_captions_and_the_compare_plot_read_the_identity_score():
    from facestudio.face.identity import Similarity
    from facestudio.ui.generate_tab import ResultEntry, history_caption, strength_scores

    def record(strength, similarity):
        return SimpleNamespace(seed=7, request=SimpleNamespace(face_strength=strength), similarity=similarity)

    alike = Similarity(similarity=0.8123, same_person=True, model="dlib", threshold=0.6)
    assert history_caption(record(0.4, alike)) == "seed 7 · strength 0.4 · identity 0.81 (same person)"
    assert history_caption(record(0.0, None)) == "seed 7 · strength 0 · identity: no face found"
    entries = [ResultEntry("a.png", "a.png", "", record(0.0, None)),  # type: ignore[arg-type]
               ResultEntry("b.png", "b.png", "", record(0.8, alike))]  # type: ignore[arg-type]
    assert strength_scores(entries) == [{"strength": 0.8, "identity": 0.8123}]
