"""The decode policy: which decode of a file each model's input is made from (the one home of the rule).

A model's input depends on its own preprocessing and the run's ``--full-decode`` switch only, never on
the other models of the run, so a model scores a photo the same alone and beside any other model:

- a model whose resize allows the JPEG draft (``ResizeSpec.jpeg_draft``), in a run that does not turn
  drafts off (``DecodeOptions.jpeg_draft``), is fed from a JPEG decoded with the draft: libjpeg scales by
  1/2, 1/4 or 1/8 in the DCT domain while both sides stay >= :func:`draft_side` (never below the model's
  input size);
- every other model is fed from the exact (full-size) decode.

For one file, the models whose decodes give the same pixels share one decode (:func:`decode_groups`):
all of them for a file that is not a JPEG (the draft only applies to JPEGs), and for a JPEG those whose
draft resolves to the same DCT scale (an exact decode is scale 1, and so is a draft of a JPEG too small to
scale). The file is read once whatever the number of decodes (nima_rt/io/decode.py: ``decode_file``).
"""

from __future__ import annotations

from collections.abc import Sequence

from nima_rt.contract.spec import Preprocess

JPEG_SCALES = (8, 4, 2, 1)  # the DCT scalings libjpeg offers (as denominators), largest first


def draft_side(spec: Preprocess, jpeg_draft: bool = True) -> int | None:
    """The side both sides of a drafted JPEG keep for ``spec``; None for the exact decode.

    ``jpeg_draft`` False (``--full-decode``) makes every decode exact."""
    if not (jpeg_draft and spec.resize.jpeg_draft):
        return None
    return spec.size


def jpeg_scale(size: tuple[int, int], side: int | None) -> int:
    """The DCT scale denominator a draft keeping both sides >= ``side`` gives a JPEG of ``size``:
    the largest of 8, 4, 2, 1 that does not exceed ``min(width // side, height // side)`` (Pillow's
    ``JpegImageFile.draft`` rule); 1 for the exact decode (``side`` None)."""
    if side is None:
        return 1
    fits = min(size[0] // side, size[1] // side)
    return next((scale for scale in JPEG_SCALES if fits >= scale), 1)


def decode_groups(sides: Sequence[int | None], size: tuple[int, int],
                  is_jpeg: bool) -> list[tuple[int | None, list[int]]]:
    """The decodes one file needs: ``(draft side to ask for, indices of the specs it feeds)``, one per
    distinct outcome, in the order the specs first need them.

    ``sides`` are the specs' :func:`draft_side`; ``size`` is the file's stored size (before EXIF
    orientation, as the draft sees it)."""
    if not is_jpeg:
        return [(None, list(range(len(sides))))]
    groups: dict[int, tuple[int | None, list[int]]] = {}
    for index, side in enumerate(sides):
        scale = jpeg_scale(size, side)
        if scale not in groups:
            groups[scale] = (None if scale == 1 else side, [])
        groups[scale][1].append(index)
    return list(groups.values())
