"""tools/ship_default.py: the held-out wording of the shipped model's metadata."""

from __future__ import annotations

from ship_default import held_out_note


def _summary(*refs: tuple[str, str]) -> dict:
    return {"references": [{"id": f"r{i}", "split": split, "source": source} for i, (split, source) in enumerate(refs)]}


def test_held_out_note_names_a_collection_no_training_photo_came_from() -> None:
    cross = _summary(("train", "mate-backgrounds"), ("val", "plasma-workspace-wallpapers"),
                     ("test", "python:skimage"), ("test", "pypi:imgaug==0.4.0"))
    assert held_out_note(cross) == " of another collection (python: cross-source)"
    mixed = _summary(("train", "python:sklearn"), ("test", "python:skimage"), ("test", "mate-backgrounds"))
    assert held_out_note(mixed) == ""
    assert held_out_note(_summary(("train", "mate-backgrounds"))) == ""
