"""The torch-side image data: decoding labelled images into uint8 arrays, batches of them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from nima_rt.io.decode import DecodeError, Preprocess, decode_file
from nima_rt.train.data.label_sets import LabelSet


def train_load_size(image_size: int) -> int:
    """The squash size before random crops: 256 for 224 (the seed's recipe), scaled with S."""
    return round(image_size * 256 / 224)


@dataclass
class Sample:
    index: int
    image: np.ndarray | None  # uint8 [S, S, 3], None when the file failed to decode
    error: str = ""


class ImageDataset:
    """Decodes labelled images into uint8 ``[S, S, 3]`` arrays (a map-style torch dataset).

    ``train=True``: squash to :func:`train_load_size` with the contract's resize (same decoder,
    colour rule and EXIF handling as the runtime), then a random ``S`` crop and a horizontal flip
    with probability 1/2. Randomness comes from ``(seed, augmentation_key, index)`` only, so a
    sample's crop does not depend on worker processes or on what ran before (exact resume).
    ``train=False``: the runtime's own resize to ``S`` (what the model sees when scoring).

    ``preprocess`` is the model's geometry as the contract resolves it
    (``Preprocess.for_model(metadata)``, the resolver the runtime and export verification use);
    training views squash with the same resize to the larger :func:`train_load_size` first.
    """

    def __init__(self, labels: LabelSet, preprocess: Preprocess, train: bool, seed: int = 0) -> None:
        self.labels = labels
        self.image_size = preprocess.size
        self.train = train
        self.seed = seed
        self.augmentation_key = 0
        size = train_load_size(preprocess.size) if train else preprocess.size
        self.preprocess = [dataclasses.replace(preprocess, size=size)]

    def __len__(self) -> int:
        return len(self.labels)

    def set_augmentation_key(self, key: int) -> None:
        """Choose the augmentation draw (the epoch, or a cached view's number)."""
        self.augmentation_key = int(key)

    def __getitem__(self, index: int) -> Sample:
        try:
            (array,) = decode_file(self.labels.paths[index], self.preprocess)
        except DecodeError as exc:
            return Sample(index, None, str(exc))
        if self.train:
            rng = np.random.default_rng([self.seed, self.augmentation_key, index])
            limit = array.shape[0] - self.image_size
            top, left = (int(v) for v in rng.integers(0, limit + 1, size=2))
            array = array[top:top + self.image_size, left:left + self.image_size]
            if rng.random() < 0.5:
                array = array[:, ::-1]
        return Sample(index, np.ascontiguousarray(array))


@dataclass
class Batch:
    images: Any  # torch.uint8 [B, S, S, 3]
    indices: Any  # torch.long [B]
    failed: list[str]  # one-line reasons for samples that could not be decoded

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) on CUDA (page-locked host memory, async copies)."""
        return Batch(self.images.pin_memory(), self.indices.pin_memory(), self.failed)


def collate_samples(samples: list[Sample]) -> Batch:
    """Stack decoded samples; failed ones are dropped and reported in ``failed``."""
    import torch

    good = [s for s in samples if s.image is not None]
    failed = [s.error for s in samples if s.image is None]
    if good:
        images = torch.from_numpy(np.stack([s.image for s in good]))
    else:
        images = torch.zeros((0, 0, 0, 3), dtype=torch.uint8)
    indices = torch.tensor([s.index for s in good], dtype=torch.long)
    return Batch(images, indices, failed)
