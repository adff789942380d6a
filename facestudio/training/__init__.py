"""Training: dataset preparation (photos → a FACT training dataset) and, on top of it, FAIR training.

This layer may use `face`, `fact` and `engine`; the dataset part needs only `face`, numpy, PIL and OpenCV, and the
run-folder contract (`run.py`, `config.py`) not even those, so job lists and the UI read runs without torch or
OpenCV. The names below are imported on first use (PEP 562), so importing `facestudio.training.config` does not pull
in the dataset code. The trainer itself is `facestudio.training.train_fact` (it loads torch and diffusers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facestudio.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config", "create_run": "config", "read_config": "config",
    "OUTPUT_FOLDERS": "dataset", "PAD_MODES": "dataset", "PHOTO_SUFFIXES": "dataset", "DatasetItem": "dataset",
    "DatasetManifest": "dataset", "PrepareItem": "dataset", "PrepareReport": "dataset", "PrepareSettings": "dataset",
    "extract_zip": "dataset", "face_sharpness": "dataset", "is_dataset_folder": "dataset", "load_manifest": "dataset",
    "prepare_dataset": "dataset",
    "RunFolder": "run", "RunStage": "run", "RunState": "run", "RunStatus": "run",
}

if TYPE_CHECKING:
    from facestudio.training.config import TrainConfig, create_run, read_config
    from facestudio.training.dataset import (
        OUTPUT_FOLDERS,
        PAD_MODES,
        PHOTO_SUFFIXES,
        DatasetItem,
        DatasetManifest,
        PrepareItem,
        PrepareReport,
        PrepareSettings,
        extract_zip,
        face_sharpness,
        is_dataset_folder,
        load_manifest,
        prepare_dataset,
    )
    from facestudio.training.run import RunFolder, RunStage, RunState, RunStatus


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "OUTPUT_FOLDERS",
    "PAD_MODES",
    "PHOTO_SUFFIXES",
    "DatasetItem",
    "DatasetManifest",
    "PrepareItem",
    "PrepareReport",
    "PrepareSettings",
    "RunFolder",
    "RunStage",
    "RunState",
    "RunStatus",
    "TrainConfig",
    "create_run",
    "extract_zip",
    "face_sharpness",
    "is_dataset_folder",
    "load_manifest",
    "prepare_dataset",
    "read_config",
]
