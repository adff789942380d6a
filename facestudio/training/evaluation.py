"""Is the trained adapter better? Generate with fixed prompts and seeds through the engine, for each adapter, and
score the faces against photos that training never saw.

For each person of a dataset, the engine generates from that person's training photos (the references), and each
generated face is compared with the mean identity embedding of the person's held-out photos (`holdout.py`): the
cosine similarity of the face analyzer's identity model (the one the studio shows after every generation). An
adapter gets the mean, lowest and highest score over its images; an image without a face is counted but not
scored. Without held-out photos the training photos are the yardstick, which flatters every adapter that saw them
(the report says so). With the tiny random test models no face is ever found: the path is real, the numbers are not.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facestudio.errors import FaceStudioError, TrainingError
from facestudio.files import write_atomic
from facestudio.training.dataset import DatasetManifest

if TYPE_CHECKING:
    from PIL import Image

    from facestudio.engine import Engine, EngineSettings
    from facestudio.face import FaceAnalyzer
    from facestudio.training.config import TrainConfig
    from facestudio.training.run import RunFolder

logger = logging.getLogger(__name__)

#: Prompts of an evaluation without `--prompts`: a plain portrait and a scene, both easy for any SD1.5 model.
DEFAULT_PROMPTS = ("a portrait photo of a person, natural light", "a photo of a person smiling in a park")
DEFAULT_SEEDS = 2
EVALUATION_FILE = "evaluation.json"
#: The reference photos the engine takes at most (`GenerateRequest`).
MAX_REFERENCES = 8


@dataclass(frozen=True)
class PersonPhotos:
    """One person of the dataset: the photos to generate from, and the photos to score against."""

    identity: str
    references: tuple[Path, ...]
    targets: tuple[Path, ...]


@dataclass(frozen=True)
class EvaluationPhotos:
    """Everyone the evaluation covers; `held_out` False when it scores against training photos."""

    people: tuple[PersonPhotos, ...]
    held_out: bool


def evaluation_photos(manifest: DatasetManifest, held_out: Sequence[str]) -> EvaluationPhotos:
    """The people with held-out photos (`held_out`: image paths in the dataset), or, when there are none, every
    person against their own training photos."""
    held = set(held_out)
    people = []
    for identity in manifest.identities:
        items = manifest.items_of(identity)
        train = tuple(manifest.path(item.image) for item in items if item.image not in held)
        targets = tuple(manifest.path(item.image) for item in items if item.image in held)
        if targets and train:
            people.append(PersonPhotos(identity, train[:MAX_REFERENCES], targets))
    if people:
        return EvaluationPhotos(tuple(people), held_out=True)
    everyone = []
    for identity in manifest.identities:
        photos = tuple(manifest.path(item.image) for item in manifest.items_of(identity))
        everyone.append(PersonPhotos(identity, photos[:MAX_REFERENCES], photos))
    return EvaluationPhotos(tuple(everyone), held_out=False)


@dataclass(frozen=True)
class EvaluationSettings:
    """How the images are made: `seeds` seeds (0, 1, ...) for every prompt and person, at `steps` and `size`."""

    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    seeds: int = DEFAULT_SEEDS
    steps: int = 30
    size: int = 512
    face_strength: float = 0.5
    base_model: str | None = None
    face_encoder: str | None = None
    clip_model: str | None = None  # the prompt-following score's CLIP (default: the registry's, when on disk)


@dataclass(frozen=True)
class AdapterScore:
    """One adapter's result: identity scores (None when no generated image had a face), the CLIP prompt score
    (None while no CLIP model is available), the images made and how many had a face."""

    adapter: str
    identity_mean: float | None
    identity_min: float | None
    identity_max: float | None
    clip: float | None
    images: int
    faces: int
    scores: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {"adapter": self.adapter,
                "identity": {"mean": rounded(self.identity_mean), "min": rounded(self.identity_min),
                             "max": rounded(self.identity_max)},
                "clip": rounded(self.clip), "images": self.images, "faces": self.faces}


def prompt_following_score(engine: Engine, images: Sequence[Image.Image], prompts: Sequence[str],
                           clip_model: str | None = None) -> float | None:
    """The mean CLIP score (`facestudio.engine.clip_score`) of each image against its prompt, when the CLIP model
    is on disk (a folder given as `clip_model`, or the registry's `clip-vit-l14` in the cache); None otherwise:
    an evaluation never downloads 1.7 GB for a secondary number."""
    from facestudio.engine.clip_score import clip_scores

    manager = engine.manager
    source = manager.source("clip", clip_model)
    if not images or (source.record is not None and manager.hub.cached_path(source.record) is None):
        return None
    scorer, _ = manager.clip_scorer(clip_model)
    by_prompt: dict[str, list[Image.Image]] = {}  # each prompt's text is encoded once
    for image, prompt in zip(images, prompts, strict=True):
        by_prompt.setdefault(prompt, []).append(image)
    return float(np.mean([score for prompt, group in by_prompt.items() for score in clip_scores(group, prompt, scorer)]))


def identity_embedding(analyzer: FaceAnalyzer, photos: Sequence[Path]) -> np.ndarray | None:
    """The mean unit identity embedding of the largest face of each photo (photos without a face are skipped with
    a warning); None when none has a face."""
    from facestudio.face.image import load_image

    vectors = []
    for photo in photos:
        try:
            image = load_image(photo, name=photo.name)
            vectors.append(np.asarray(analyzer.embed(image, analyzer.find_face(image, name=photo.name)), np.float64))
        except FaceStudioError as err:
            logger.warning("Not scoring against %s: %s", photo.name, err)
    if not vectors:
        return None
    unit = [v / max(float(np.linalg.norm(v)), 1e-12) for v in vectors]
    return np.mean(unit, axis=0)


def face_score(analyzer: FaceAnalyzer, image: Image.Image, target: np.ndarray) -> float | None:
    """The identity similarity of the largest face in `image` to `target`; None when it has no face."""
    from facestudio.face.identity import cosine_similarity

    faces = analyzer.analyze(image).faces
    if not faces:
        return None
    return cosine_similarity(analyzer.embed(image, faces[0]), target)


def summarize(adapter: str, scores: Sequence[float], images: int, clip: float | None) -> AdapterScore:
    if not scores:
        return AdapterScore(adapter, None, None, None, clip, images, 0)
    return AdapterScore(adapter, float(np.mean(scores)), float(min(scores)), float(max(scores)), clip, images,
                        len(scores), tuple(scores))


ImageCallback = Callable[[str, int, int], None]


def evaluate_adapters(engine: Engine, adapters: Sequence[str | None], photos: EvaluationPhotos,
                      settings: EvaluationSettings, *, labels: Sequence[str] | None = None,
                      on_image: ImageCallback | None = None) -> list[AdapterScore]:
    """Generate `settings.prompts` x `settings.seeds` images per person for every adapter (None: the base model's
    default adapter) through `engine.generate`, and score them. `on_image(label, done, total)` after each image."""
    from facestudio.engine import GenerateRequest, ModelChoice

    if not settings.prompts:
        raise TrainingError("Give at least one prompt to evaluate with.", field="prompts")
    labels = list(labels) if labels is not None else [str(a) if a is not None else "default" for a in adapters]
    analyzer = engine.manager.analyzer()
    targets = {person.identity: identity_embedding(analyzer, person.targets) for person in photos.people}
    total = len(photos.people) * len(settings.prompts) * settings.seeds
    results = []
    for adapter, label in zip(adapters, labels, strict=True):
        scores: list[float] = []
        images: list[Image.Image] = []
        prompts: list[str] = []
        for person in photos.people:
            for prompt in settings.prompts:
                request = GenerateRequest(
                    faces=tuple(str(p) for p in person.references), prompt=prompt, seed=0,
                    num_images=settings.seeds, steps=settings.steps, width=settings.size, height=settings.size,
                    face_strength=settings.face_strength,
                    models=ModelChoice(base_model=settings.base_model, adapter=adapter,
                                       face_encoder=settings.face_encoder))
                for generated in engine.generate(request).images:
                    images.append(generated.image)
                    prompts.append(prompt)
                    target = targets[person.identity]
                    score = None if target is None else face_score(analyzer, generated.image, target)
                    if score is not None:
                        scores.append(score)
                    if on_image is not None:
                        on_image(label, len(images), total)
        clip = prompt_following_score(engine, images, prompts, settings.clip_model)
        results.append(summarize(label, scores, len(images), clip))
    return results


def format_table(results: Sequence[AdapterScore], held_out: bool) -> str:
    """The side-by-side table `evaluate` prints."""
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    against = "held-out photos" if held_out else "training photos (no held-out photos)"
    lines = [f"identity similarity to the {against}; clip: prompt following",
             f"{'adapter':<40}{'mean':>8}{'min':>8}{'max':>8}{'clip':>8}{'faces':>10}"]
    for row in results:
        name = row.adapter if len(row.adapter) <= 38 else "..." + row.adapter[-35:]
        lines.append(f"{name:<40}{number(row.identity_mean):>8}{number(row.identity_min):>8}"
                     f"{number(row.identity_max):>8}{number(row.clip):>8}{f'{row.faces}/{row.images}':>10}")
    return "\n".join(lines)


# -- the end of a training run ----------------------------------------------------------------------------------------


def evaluate_run(run: RunFolder, config: TrainConfig, engine_settings: EngineSettings) -> dict | None:
    """Compare the run's trained adapter with the one it started from on its held-out photos and write
    RUN/evaluation.json. Skipped (None) when the run held no photo out. Errors propagate: the caller decides that
    a failed evaluation leaves the run done (the adapter is the deliverable)."""
    from facestudio.engine import Engine, ModelManager
    from facestudio.engine.requests import MIN_SIDE
    from facestudio.training.config import INIT_DEFAULT, INIT_SCRATCH
    from facestudio.training.dataset import load_manifest
    from facestudio.training.holdout import read_split

    split = read_split(run.root)
    if split is None or not split.images:
        logger.info("No photos were held out of %s; not evaluating (train with --holdout 1 to evaluate).",
                    run.root)
        return None
    manifest = load_manifest(Path(config.dataset))
    photos = evaluation_photos(manifest, split.images)
    settings = EvaluationSettings(seeds=len(config.sample_seeds), steps=config.sample_steps, size=max(MIN_SIDE, min(512, config.resolution)),
                                  face_strength=config.sample_strength, base_model=config.base_model,
                                  face_encoder=config.face_encoder)
    before: str | None = None if config.init == INIT_DEFAULT else config.init
    adapters: list[str | None] = [str(run.adapter_path)]
    labels = ["after"]
    if config.init != INIT_SCRATCH:  # a fresh adapter changes nothing: the "before" would be the bare base model
        adapters.insert(0, before)
        labels.insert(0, "before")
    started = time.perf_counter()
    manager = ModelManager(engine_settings)
    try:
        results = evaluate_adapters(Engine(manager), adapters, photos, settings, labels=labels)
    finally:
        manager.unload()
    by_label = {row.adapter: row.to_dict() for row in results}
    for label, adapter in zip(labels, adapters, strict=True):
        by_label[label]["adapter"] = "default" if adapter is None else Path(adapter).name
    report = {"held_out": list(split.images), "against": "held-out" if photos.held_out else "training",
              "prompts": list(settings.prompts), "seeds": list(range(settings.seeds)), "steps": settings.steps,
              "size": settings.size, "before": by_label.get("before"), "after": by_label["after"],
              "seconds": round(time.perf_counter() - started, 1)}
    write_atomic(run.root / EVALUATION_FILE, json.dumps(report, indent=2).encode("utf-8"))
    before_mean, after_mean = likeness_before_after(report)
    logger.info("Likeness on held-out photos: before %s -> after %s", _shown(before_mean), _shown(after_mean))
    return report


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def read_evaluation(run_root: Path) -> dict | None:
    """RUN/evaluation.json, or None when missing or damaged (with a warning for the latter)."""
    path = Path(run_root) / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("after"), dict):
            raise ValueError("no result for the trained adapter")
    except (OSError, ValueError, RecursionError) as err:
        logger.warning("Ignoring the damaged %s (%s).", path.name, err)
        return None
    return data


def likeness_before_after(evaluation: dict) -> tuple[float | None, float | None]:
    """The mean identity score (before, after) of a run's evaluation, None where missing (no "before" for a
    scratch run, no face drawn) or not a number (a hand-edited file)."""
    def mean(key: str) -> float | None:
        row = evaluation.get(key)
        identity = row.get("identity") if isinstance(row, dict) else None
        value = identity.get("mean") if isinstance(identity, dict) else None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return mean("before"), mean("after")


def evaluation_engine_settings(settings: EngineSettings, device: str) -> EngineSettings:
    """The trainer's engine settings, placed on the device it trained on (its manager loads on the CPU)."""
    from facestudio.engine import select_device

    return replace(settings, placement=select_device(device))
