"""Training: dataset preparation (photos → a FACT training dataset) and, on top of it, FAIR training.

This layer may use `face`, `fact` and `engine`; the dataset part needs only `face`, numpy, PIL and OpenCV.
"""

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

__all__ = [
    "OUTPUT_FOLDERS",
    "PAD_MODES",
    "PHOTO_SUFFIXES",
    "DatasetItem",
    "DatasetManifest",
    "PrepareItem",
    "PrepareReport",
    "PrepareSettings",
    "extract_zip",
    "face_sharpness",
    "is_dataset_folder",
    "load_manifest",
    "prepare_dataset",
]
