"""The offline reference photos (train/datasets/reference_catalog.py and references.py): catalogue, fetching,
manifest. No network."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from nima_rt.train.datasets import reference_catalog as catalog
from nima_rt.train.datasets import references as refs
from nima_rt.train.datasets.reference_catalog import CATALOG, ReferenceError, ReferencePhoto


def test_catalogue_has_the_debian_photographs_and_the_python_ones() -> None:
    by_source = Counter(photo.source for photo in CATALOG)
    assert by_source == {
        catalog.PLASMA: 11, catalog.MATE: 11, catalog.LOMIRI_16: 14, catalog.LOMIRI_20: 1,
        catalog.LXQT: 11, catalog.TUXPAINT: 18, catalog.PALAPELI: 5, catalog.PUZZLE: 2, catalog.SDDM_MALDIVES: 1,
        catalog.DIGIKAM: 1,
        "python:skimage": 5, "python:sklearn": 2, "python:matplotlib": 1, "pypi:imgaug==0.4.0": 1,
        "pypi:mahotas==1.4.19": 1,
    }
    assert sum(by_source[p] for p in catalog.DEBIAN_PACKAGES) == 75
    ids = [photo.id for photo in CATALOG]
    assert len(set(ids)) == len(ids)
    # Renders, illustrations, screenshots, letterboxed or soft textures and the deliberately
    # motion-blurred Storm are not references.
    for excluded in ("plasma-Volna", "plasma-Altai", "mate-Storm", "lomiri-umang", "lomiri-Fossa",
                     "lomiri-Infinite-Sea", "lomiri-Painting-Colors", "lxqt-kde-plasma", "lxqt-triangles",
                     "lxqt-origami-dark", "tuxpaint-mossy_bark", "puzzle-table"):
        assert excluded not in ids
    members = {photo.member for photo in CATALOG}
    assert "usr/share/sddm/themes/maldives/maldives.jpg" not in members  # a screenshot of the greeter


def test_every_photo_has_a_licence_an_author_and_a_split() -> None:
    for photo in CATALOG:
        assert photo.license and photo.author and photo.title, photo.id
        assert photo.split in catalog.SPLITS, photo.id
        assert photo.since in catalog.RELEASES, photo.id
    splits = Counter(photo.split for photo in CATALOG)
    assert splits == {"train": 57, "val": 16, "test": 12}
    test_sources = {photo.source for photo in CATALOG if photo.split == "test"}
    assert len(test_sources) >= 4  # held-out photos come from several collections
    # v3's photos only add training and validation photos: the test photos are v1's.
    assert {photo.split for photo in CATALOG if photo.since == "v3"} == {"train", "val"}


def test_the_v1_release_is_the_v1_recipe_s_catalogue() -> None:
    v1 = catalog.catalog_release("v1")
    assert len(v1) == 47 and all(photo.since == "v1" for photo in v1)
    assert Counter(photo.split for photo in v1) == {"train": 29, "val": 6, "test": 12}
    assert catalog.catalog_release("v3") == CATALOG == catalog.catalog_release(None)
    with pytest.raises(ReferenceError, match="unknown catalogue release 'v2': use one of v1, v3"):
        catalog.catalog_release("v2")


def test_opencv_doc_is_never_a_source() -> None:
    # Reserved for an independent check: not fetched, not used for anything.
    assert not any("opencv" in photo.source for photo in CATALOG)


def test_cross_source_split_holds_out_a_whole_collection() -> None:
    by_collection = Counter(catalog.collection(photo) for photo in CATALOG)
    assert by_collection == {"debian": 75, "python": 10}
    splits = Counter((catalog.collection(p), catalog.cross_source_split(p, "python")) for p in CATALOG)
    assert splits == {("debian", "train"): 54, ("debian", "val"): 21, ("python", "test"): 10}
    debian_test = Counter(catalog.cross_source_split(p, "debian") for p in CATALOG if catalog.collection(p) == "debian")
    assert debian_test == {"test": 75}
    with pytest.raises(ReferenceError, match="unknown collection 'web': use one of debian, python"):
        catalog.cross_source_split(CATALOG[0], "web")


def test_wheel_member_is_read_from_a_cached_wheel(tmp_path: Path) -> None:
    import zipfile

    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "demo_pkg-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("demo_pkg/data/photo.jpg", b"not really a jpeg")
    path = refs.wheel_member("pypi:demo-pkg==1.0", "demo_pkg/data/photo.jpg", tmp_path / "cache")
    assert path == (tmp_path / "cache" / "extract" / "demo-pkg-1.0" / "demo_pkg" / "data" / "photo.jpg").resolve()
    assert path.read_bytes() == b"not really a jpeg"
    with pytest.raises(ReferenceError, match="demo_pkg-1.0-py3-none-any.whl: has no demo_pkg/other.png"):
        refs.wheel_member("pypi:demo-pkg==1.0", "demo_pkg/other.png", tmp_path / "cache")
    with pytest.raises(ReferenceError, match="pypi:demo-pkg: expected pypi:NAME==VERSION"):
        refs.wheel_member("pypi:demo-pkg", "x", tmp_path / "cache")


def test_manifest_with_holdout_has_the_cross_source_splits(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    photos = tuple(p for p in CATALOG if p.id in ("skimage-coffee", "skimage-astronaut"))
    manifest = refs.fetch_references(tmp_path, photos, holdout="python")
    assert manifest.name == "manifest-holdout-python.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))["photos"]
    assert {(e["id"], e["split"], e["collection"]) for e in data} == {
        ("skimage-coffee", "test", "python"), ("skimage-astronaut", "test", "python")}


def _python_photos() -> tuple[ReferencePhoto, ...]:
    pytest.importorskip("skimage")
    return tuple(p for p in CATALOG if p.id in ("skimage-coffee", "skimage-chelsea"))


def test_fetch_copies_photos_and_writes_a_manifest(tmp_path: Path) -> None:
    photos = _python_photos()
    manifest = refs.fetch_references(tmp_path, photos)
    data = json.loads(manifest.read_text(encoding="utf-8"))["photos"]
    assert [entry["id"] for entry in data] == ["skimage-chelsea", "skimage-coffee"]
    coffee = data[1]
    assert coffee["file"] == "skimage-coffee.png"
    assert (coffee["width"], coffee["height"]) == (600, 400)
    assert coffee["license"] == "CC0-1.0" and coffee["split"] == "test"
    with Image.open(tmp_path / "photos" / "skimage-coffee.png") as image:
        assert image.size == (600, 400)
    entries = refs.read_manifest(manifest)
    assert set(entries) == {"skimage-chelsea.png", "skimage-coffee.png"}


def _fake_tools(folder: Path, apt_script: str) -> None:
    """Fake apt-get and dpkg on PATH: apt-get writes a .deb, dpkg -x makes the package tree."""
    folder.mkdir()
    tools = {
        "apt-get": apt_script,
        "dpkg": "#!/bin/sh\n# dpkg -x DEB TARGET\nmkdir -p \"$3/usr/share/backgrounds/mate/nature\"\n"
                "cp \"$2\" \"$3/usr/share/backgrounds/mate/nature/Aqua.jpg\"\n",
    }
    for name, text in tools.items():
        path = folder / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_debian_download_and_extract_with_apt_get_and_dpkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jpeg = tmp_path / "aqua.jpg"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(jpeg)
    # The fake "deb" is the JPEG itself; the fake dpkg copies it into the package tree.
    _fake_tools(tmp_path / "bin", f"#!/bin/sh\ncp {jpeg} \"$PWD/$2_1.0_all.deb\"\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    aqua = next(p for p in CATALOG if p.id == "mate-Aqua")
    manifest = refs.fetch_references(tmp_path / "cache", (aqua,))
    entry = json.loads(manifest.read_text(encoding="utf-8"))["photos"][0]
    assert entry["file"] == "mate-Aqua.jpg" and entry["license"] == "GPL-2.0-or-later"
    assert (entry["width"], entry["height"]) == (40, 30)
    assert (tmp_path / "cache" / "debs" / "mate-backgrounds_1.0_all.deb").is_file()
    # A second fetch reuses the cached .deb and extraction (apt-get would now fail).
    _fake_tools(tmp_path / "bin2", "#!/bin/sh\nexit 100\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin2'}{os.pathsep}{os.environ['PATH']}")
    refs.fetch_references(tmp_path / "cache", (aqua,))


def test_a_relative_cache_folder_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # recipes/technical.sh passes a relative cache; dpkg -x runs inside it, so the path is resolved.
    jpeg = tmp_path / "aqua.jpg"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(jpeg)
    _fake_tools(tmp_path / "bin", f"#!/bin/sh\ncp {jpeg} \"$PWD/$2_1.0_all.deb\"\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    aqua = next(p for p in CATALOG if p.id == "mate-Aqua")
    manifest = refs.fetch_references(Path("work") / "refs", (aqua,))
    assert manifest == tmp_path / "work" / "refs" / "manifest.json"
    assert (tmp_path / "work" / "refs" / "photos" / "mate-Aqua.jpg").is_file()


def test_apt_get_failure_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tools(tmp_path / "bin", "#!/bin/sh\necho 'E: Unable to locate package mate-backgrounds' >&2\nexit 100\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    aqua = next(p for p in CATALOG if p.id == "mate-Aqua")
    with pytest.raises(ReferenceError, match="`apt-get download mate-backgrounds` failed .*Unable to locate package"):
        refs.fetch_references(tmp_path / "cache", (aqua,))


def test_missing_python_package_is_named() -> None:
    photo = ReferencePhoto("x", "python:no_such_module_here", "data/x.png", "x", "x", "CC0-1.0", "train")
    with pytest.raises(ReferenceError, match="Python package 'no_such_module_here' is not installed"):
        refs.locate(photo, Path("."))


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "expected a JSON object with a 'photos' list"),
    ('{"photos": [{"split": "train"}]}', r"photos\[0\] has no 'file'"),
    ('{"photos": [{"file": "a.jpg", "split": "holdout"}]}', r"photos\[0\] \(a.jpg\) split must be one of"),
    ("{not json", "cannot read reference manifest"),
])
def test_bad_manifests_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReferenceError, match=message):
        refs.read_manifest(path)


def test_fetch_references_command_refuses_an_unknown_collection(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nima_rt.cli import app

    result = CliRunner().invoke(app, ["fetch-references", str(tmp_path / "cache"), "--holdout", "web"])
    assert result.exit_code == 1
    assert result.output.strip().endswith("error: unknown collection 'web': use one of debian, python")
    assert not (tmp_path / "cache").exists()  # refused before anything is fetched


def test_fetch_references_command_refuses_an_unknown_release(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nima_rt.cli import app

    result = CliRunner().invoke(app, ["fetch-references", str(tmp_path / "cache"), "--catalogue", "v9"])
    assert result.exit_code == 1
    assert result.output.strip().endswith("error: unknown catalogue release 'v9': use one of v1, v3")
    assert not (tmp_path / "cache").exists()
