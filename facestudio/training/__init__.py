"""Training: dataset preparation (photos → a FACT training dataset) and, on top of it, FAIR training.

This layer may use `face`, `fact` and `engine`; the dataset part needs only `face`, numpy, PIL and OpenCV, and the
run-folder contract (`run.py`, `config.py`) not even those, so job lists and the UI read runs without torch. The
trainer itself is `facestudio.training.train_fact` (imported on use: it loads torch and diffusers).
"""

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
from facestudio.training.run import RUN_STATES, RunFolder, RunStatus

__all__ = [
    "OUTPUT_FOLDERS",
    "PAD_MODES",
    "PHOTO_SUFFIXES",
    "RUN_STATES",
    "DatasetItem",
    "DatasetManifest",
    "PrepareItem",
    "PrepareReport",
    "PrepareSettings",
    "RunFolder",
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
