"""The prompt-following score: CLIP score by transformers' own CLIP code (a tiny random CLIP), loaded through the
model manager, and the recommended strength of a comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facestudio.engine.clip_score import ClipScorer, clip_scores
from facestudio.engine.likeness import (
    StrengthComparison,
    StrengthPoint,
    comparison_grid,
    comparison_plot,
    recommend_strength,
)
from facestudio.errors import InvalidRequestError
from tests.engine.conftest import make_manager
from tests.engine.tiny_models import write_tiny_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


def images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 40, 3), dtype=np.uint8)) for i in range(count)]


def test_clip_score_is_transformers_clip_cosine_times_100(tiny_clip):
    scorer = ClipScorer.from_pretrained(tiny_clip)
    pictures = images(3)
    scores = clip_scores(pictures, "a portrait photo", scorer)
    inputs = scorer.processor(text=["a portrait photo"], images=pictures, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = scorer.model(**inputs)
    cosine = output.logits_per_image[:, 0] / scorer.model.logit_scale.exp()
    expected = (100 * cosine.clamp(min=0)).tolist()
    assert scores == pytest.approx(expected, abs=1e-3)
    assert len(set(round(s, 3) for s in scores)) == 3 and all(0 <= s <= 100 for s in scores)
    assert clip_scores(pictures, "a portrait photo " * 60, scorer)  # longer than 77 tokens: cut, not an error
    assert clip_scores([], "x", scorer) == []
    with pytest.raises(InvalidRequestError, match="empty"):
        clip_scores(pictures, " ", scorer)


def test_the_manager_loads_clip_on_request_only_and_unloads_it(tiny_studio, tiny_clip, tmp_path):
    manager = make_manager(tiny_studio, tmp_path)
    assert not any(name.startswith("clip:") for name in manager.loaded())
    scorer, file = manager.clip_scorer(str(tiny_clip))
    assert manager.clip_scorer(str(tiny_clip))[0] is scorer and file.spec == str(tiny_clip)
    assert f"clip:{tiny_clip}" in manager.loaded()
    assert manager.unload("clip") == [f"clip:{tiny_clip}"]
    assert manager.registry.get(manager.registry.default_for("clip")).repo == "openai/clip-vit-large-patch14"


def point(strength, identity, clip):
    return StrengthPoint(strength, identity, identity is not None and identity >= 0.6, clip)


def test_recommended_strength_is_the_lowest_that_passes_else_the_best_balance():
    passing = [point(0.0, 0.2, 30), point(0.5, 0.65, 26), point(1.0, 0.8, 20)]
    assert recommend_strength(passing, 0.6)[0] == 0.5
    none_pass = [point(0.0, 0.1, 30), point(0.5, 0.4, 26), point(1.0, 0.5, 15)]
    strength, reason = recommend_strength(none_pass, 0.6)
    assert strength == 0.5 and "balance" in reason  # 0.4 * 26 > 0.5 * 15 > 0.1 * 30
    assert recommend_strength([point(0.0, None, 30), point(1.0, None, 20)], 0.6)[0] is None


def test_grid_and_plot_are_drawn_for_every_point():
    points = (point(0.0, 0.3, 28), point(0.5, 0.62, 25), point(1.0, None, 21))
    comparison = StrengthComparison("p", 1, 0.6, points, 0.5, "why")
    grid = comparison_grid(images(3), points, height=64)
    assert grid.height == 64 + 34 and grid.width == sum(round(im.width * 64 / im.height) for im in images(3))
    plot = np.asarray(comparison_plot(comparison))
    assert plot.shape == (480, 640, 3) and (plot != 255).any()
