"""Manifests on the local engine (nima_rt.io.manifests, iter_inputs): a CSV/Parquet 'path' column lists the
inputs, relative entries are read next to the manifest and written as they are, the other columns are carried
into every output format and --group-by takes them; bad manifests are one-line errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.photos import photo_like
from PIL import Image

from nima_rt import RunOptions, Scorer, SettingError, score_run
from nima_rt.io.inputs import InputItem, PathList, carried_columns, iter_inputs
from nima_rt.io.manifests import ManifestError, manifest_columns
from nima_rt.io.scores.reader import ScoreFiles


@pytest.fixture
def listing_dir(tmp_path: Path) -> Path:
    """Eight photos of three listings in nested folders, and a broken one."""
    root = tmp_path / "data"
    for index in range(8):
        folder = root / "photos" / f"L{index % 3}" / ("ext" if index % 2 else "int")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_like(index)).save(folder / f"{index}.jpg", quality=90)
    (root / "photos" / "L1" / "broken.jpg").write_bytes(b"no")
    return root


def write_manifest(root: Path, name: str = "m.csv") -> Path:
    """listing_id, path (relative to the manifest), city; one row per photo, listings interleaved."""
    photos = sorted((root / "photos").rglob("*.jpg"), key=lambda p: p.name)
    rows = [{"listing_id": p.relative_to(root / "photos").parts[0], "path": str(p.relative_to(root)),
             "city": "=Paris" if p.name == "3.jpg" else "Lyon"} for p in photos]
    target = root / name
    if name.endswith(".csv"):
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["listing_id", "path", "city"])
            writer.writeheader()
            writer.writerows(rows + [{"listing_id": "L9", "path": "", "city": ""}])  # an empty entry: skipped
    else:
        pq.write_table(pa.Table.from_pylist(rows), target)
    return target


@pytest.mark.parametrize("name", ["m.csv", "m.parquet"])
def test_a_manifest_lists_inputs_with_their_carried_columns(listing_dir: Path, name: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_manifest(listing_dir, name)
    monkeypatch.chdir(tmp_path)  # relative entries are read next to the manifest, not from here
    items = list(iter_inputs([str(manifest)]))
    assert [item.path for item in items][:2] == ["photos/L0/int/0.jpg", "photos/L1/ext/1.jpg"]
    assert items[0] == InputItem("photos/L0/int/0.jpg", None, str(listing_dir / "photos/L0/int/0.jpg"),
                                 {"listing_id": "L0", "city": "Lyon"})
    assert len(items) == 9 and carried_columns([str(manifest)]) == ["listing_id", "city"]
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"s.{fmt}"
        with Scorer([_tiny(tmp_path)]) as scorer:
            summary = score_run(scorer, [str(manifest)], RunOptions(output=str(out)))
        assert (summary.scored, summary.failed) == (8, 1)
        files = ScoreFiles([out])
        assert files.carried == ["listing_id", "city"]
        rows = list(files.rows())
        assert [r.path for r in rows] == [item.path for item in items]  # as written in the manifest
        assert [r.carried["listing_id"] for r in rows] == [item.carried["listing_id"] for item in items]  # type: ignore
        assert {r.carried["city"] for r in rows} == {"Lyon", "=Paris"}  # formula-escaped in CSV, read back as is
        assert rows[-1].error == "photos/L1/broken.jpg: not an image file Pillow can read"  # names the entry


def _tiny(tmp_path: Path) -> Path:
    from helpers.tiny_models import write_tiny_model

    path = tmp_path / "tiny.onnx"
    return path if path.exists() else write_tiny_model(path, name="tiny", size=32)


def test_group_by_a_manifest_column_and_by_folder_depth(listing_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_manifest(listing_dir)
    out = tmp_path / "picks.jsonl"
    with Scorer([_tiny(tmp_path)]) as scorer:
        score_run(scorer, [str(manifest)], RunOptions(output=str(out), group_by="listing_id"))
        monkeypatch.chdir(listing_dir)
        by_depth = tmp_path / "depth.jsonl"
        score_run(scorer, ["photos"], RunOptions(output=str(by_depth), group_by="dir:2"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["group"] for row in rows] == ["L0"] * 3 + ["L1"] * 4 + ["L2"] * 2  # first seen: L0, L1, L2
    best = {row["group"]: row["path"] for row in rows if row["best"]}
    depth_rows = [json.loads(line) for line in by_depth.read_text().splitlines()]
    assert {row["group"] for row in depth_rows} == {"photos/L0", "photos/L1", "photos/L2"}  # ext/ and int/ together
    assert {row["group"][len("photos/"):]: row["path"] for row in depth_rows if row["best"]} == best
    assert [row["listing_id"] for row in rows if row["best"]] == ["L0", "L1", "L2"]


def test_lists_and_uris_and_bad_manifests(listing_dir: Path, tmp_path: Path) -> None:
    listed = tmp_path / "list.csv"  # named .csv, but given in a list of paths: a file, never a manifest
    assert list(iter_inputs([PathList([str(listed)])])) == [InputItem(str(listed))]
    uris = tmp_path / "uris.csv"
    uris.write_text("path\ns3://bucket/a.jpg\n", encoding="utf-8")
    [item] = iter_inputs([str(uris)])
    assert item.error == "s3://bucket/a.jpg: a URI; the local engine reads local files (score URIs with --engine ray)"
    no_path = tmp_path / "nopath.csv"
    no_path.write_text("file,id\na.jpg,1\n", encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        manifest_columns(str(no_path))
    assert str(caught.value) == f"{no_path}: manifest has no 'path' column (columns: file, id)"
    with Scorer([_tiny(tmp_path)]) as scorer, pytest.raises(SettingError) as setting:
        score_run(scorer, [str(no_path)], RunOptions(output=str(tmp_path / "o.csv")))
    assert (setting.value.option, str(setting.value)) == ("PATH", str(caught.value))
    clash = tmp_path / "clash.csv"
    clash.write_text("path,rank,price_mean\na.jpg,1,2\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"manifest column\(s\) 'rank', 'price_mean' would clash"):
        manifest_columns(str(clash))
    latin = tmp_path / "latin.csv"  # a name that is not UTF-8 survives as os.fsdecode gives it
    latin.write_bytes(b"path\nphotos/caf\xe9.jpg\n")
    [item] = iter_inputs([str(latin)])
    assert item.path == os.fsdecode(b"photos/caf\xe9.jpg")
    torn = tmp_path / "torn.parquet"
    torn.write_bytes(b"PAR1 truncated")
    assert [i.error for i in iter_inputs([str(torn)])][0].startswith(f"{torn}: cannot read manifest (")


def test_a_column_named_like_a_model_and_a_resume_with_other_columns_are_refused(listing_dir: Path,
                                                                                 tmp_path: Path) -> None:
    from nima_rt.io.scores.writers import OutputError

    named = listing_dir / "named.csv"
    named.write_text("path,tiny\nphotos/L0/int/0.jpg,x\n", encoding="utf-8")
    manifest = write_manifest(listing_dir)
    out = tmp_path / "s.jsonl"
    with Scorer([_tiny(tmp_path)]) as scorer:
        with pytest.raises(SettingError, match="manifest column\\(s\\) 'tiny' have the name of a model column"):
            score_run(scorer, [str(named)], RunOptions(output=str(out)))
        score_run(scorer, [str(manifest)], RunOptions(output=str(out)))
        with pytest.raises(OutputError) as caught:
            score_run(scorer, [str(listing_dir / "photos")], RunOptions(output=str(out), resume=True))
    assert str(caught.value) == (f"{out}: cannot resume, its rows carry other columns (listing_id, city) than this "
                                 "run's (none)")
