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


def test_weights_licence_is_the_parent_s_or_imagenet_efficientnet_s() -> None:
    from ship_default import EFFICIENTNET_LICENSE, weight_licenses

    from nima_rt.contract.spec import ModelMetadata

    fine_tuned = ModelMetadata(name="technical", backbone="keras_mobilenet_v1_1.00_folded",
                               licenses=["Apache-2.0, Copyright 2018 idealo internet GmbH"])
    assert weight_licenses(fine_tuned) == ["Apache-2.0, Copyright 2018 idealo internet GmbH"]
    assert weight_licenses(ModelMetadata(name="technical", backbone="efficientnet_lite0")) == [EFFICIENTNET_LICENSE]
    assert weight_licenses(ModelMetadata(name="technical", backbone="mobilenet_v2")) == []


def test_blind_spots_name_the_weakly_ranked_types_weakest_first() -> None:
    from ship_default import blind_spots

    from nima_rt.train.evaluation.graded_eval import GradedReport, TypeResult

    def result(rho: float) -> TypeResult:
        return TypeResult(rho, rho, 10, 30, 30)

    report = GradedReport({"jpeg": result(-1.0), "overexposure": result(-0.383), "tone_mapping": result(-0.297),
                           "white_balance": result(-0.8)}, ("jpeg",), (2, 3, 4))
    assert blind_spots(report, 54) == (
        "ranks tone mapping (-0.30), overexposure (-0.38) weakly (Spearman of score vs damage level on held-out "
        "photos, above -0.8); trained on 54 photos (landscapes, plants, animals, buildings; no interiors or rooms); "
        "cross-source table in docs/reference/models.md")
    assert blind_spots(GradedReport({"jpeg": result(-1.0)}, ("jpeg",), (2, 3, 4)), 29) == (
        "trained on 29 photos (landscapes, plants, animals, buildings; no interiors or rooms); cross-source table "
        "in docs/reference/models.md")
