"""Expand the PATH arguments of a run into image files, lazily and in a stable order.

A PATH is a folder (walked), a CSV/Parquet manifest with a ``path`` column (its entries, in order, with its
other columns carried: :mod:`nima_rt.io.manifests`), or a file. A :class:`PathList` (the lines of ``-`` or
``--paths-from``) stands for its paths, each taken as a folder or a file, never as a manifest.

Folders are walked iteratively (no recursion limit however deep), in sorted order (a folder's files,
then its sub-folders one by one), following symlinks to folders once: a folder reached twice (a
symlink loop, or a second link to it) is walked the first time only. Files whose extension is not an
image extension (:func:`nima_rt.io.decode.image_extensions`, narrowed with ``extensions``) are skipped and
counted in :class:`WalkReport`; a file named explicitly is always tried, whatever its name.

A folder holding a file named :data:`SKIP_MARKER` (``.nima-rt-skip``) is not walked, nor are its
sub-folders: nima-rt writes one into the folders of files it makes that look like photos (a report's
``<page>_files/`` thumbnails), so a report written inside the photo folder is not scored as a listing by
the next run. Anyone may drop one into a folder to keep it out of runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from nima_rt.io.decode import image_extensions, path_label
from nima_rt.io.locations import is_uri
from nima_rt.io.manifests import ManifestError, is_manifest, manifest_columns, manifest_entries, source_of, uri_error
from nima_rt.io.plugins import missing_plugin_hint

SKIPPED_EXAMPLES = 5  # skipped file names a WalkReport keeps for the summary line
# Spellings of one extension: `--ext` with any of them takes them all (one format's several names, not a
# format family: `--ext ppm` still leaves .pgm out).
EXTENSION_ALIASES = (
    frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
    frozenset({".tif", ".tiff"}),
    frozenset({".heic", ".heif", ".hif"}),
)
SKIP_MARKER = ".nima-rt-skip"  # a folder holding this file is left out of walks (module doc)
SKIP_MARKER_TEXT = (
    "This folder holds files nima-rt wrote (report thumbnails). A folder with a file named .nima-rt-skip is\n"
    "left out when nima-rt walks folders of photos, so these files are never scored as photos.\n"
)


@dataclass(frozen=True)
class InputItem:
    """A file to score, or a path that could not be listed (``error`` set). ``path`` is what the output says;
    ``source`` is where the file is read when that differs (a manifest's relative entry); ``carried`` holds
    a manifest row's other columns."""

    path: str
    error: str | None = None
    source: str | None = None
    carried: dict[str, str] | None = None

    @property
    def location(self) -> str:
        """Where the file is read."""
        return self.source if self.source is not None else self.path


class PathList:
    """Paths read from a list (``find ... | nima-rt score -``): each is a folder or a file, never a manifest."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = paths

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)


@dataclass
class WalkReport:
    """What a walk left out: files with other extensions and folders reached a second time."""

    skipped_files: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    repeated_folders: list[str] = field(default_factory=list)
    marked_folders: list[str] = field(default_factory=list)  # folders holding SKIP_MARKER, not walked
    skipped_extensions: set[str] = field(default_factory=set)

    def skip(self, path: str) -> None:
        self.skipped_files += 1
        self.skipped_extensions.add(os.path.splitext(path)[1].lower())
        if len(self.skipped_examples) < SKIPPED_EXAMPLES:
            self.skipped_examples.append(path_label(path))

    def summary(self) -> str | None:
        """One line for stderr, or None when nothing was left out."""
        parts = []
        if self.skipped_files:
            hint = missing_plugin_hint(self.skipped_extensions)
            parts.append(
                f"skipped {self.skipped_files} file(s) without an image extension "
                f"(e.g. {', '.join(self.skipped_examples)})" + (f"; {hint}" if hint else "")
            )
        if self.marked_folders:
            parts.append(
                f"left out {len(self.marked_folders)} folder(s) marked {SKIP_MARKER} (e.g. {self.marked_folders[0]})"
            )
        if self.repeated_folders:
            parts.append(
                f"walked {len(self.repeated_folders)} folder(s) once though linked again "
                f"(e.g. {self.repeated_folders[0]})"
            )
        return "; ".join(parts) or None


def normalize_extensions(extensions: Iterable[str] | None) -> frozenset[str]:
    """The extensions a walk takes: None -> every image extension Pillow registers; otherwise each given
    extension, case-insensitively, with its other spellings (:data:`EXTENSION_ALIASES`: ``jpg`` takes
    ``.jpg .jpeg .jpe .jfif``, ``tiff`` takes ``.tif .tiff``, ``heic`` takes ``.heic .heif .hif``)."""
    if extensions is None:
        return image_extensions()
    given = {"." + ext.strip().lower().lstrip(".") for ext in extensions if ext.strip().strip(".")}
    if not given:
        raise ValueError("extensions: give at least one, e.g. jpg,png")
    return frozenset(given.union(*(spellings for spellings in EXTENSION_ALIASES if spellings & given)))


Paths = Iterable["str | os.PathLike[str] | PathList"] | str | os.PathLike[str]


def iter_inputs(paths: Paths, extensions: Iterable[str] | None = None, report: WalkReport | None = None
                ) -> Iterator[InputItem]:
    """Yield files to score: folders are walked and manifests listed (see the module doc); anything else
    given explicitly is yielded as is, so a missing or unreadable path becomes an error row rather than
    vanishing. An unreadable sub-folder or manifest is an error item. A single path (``"photos/"``) is one
    path, not characters."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    wanted = normalize_extensions(extensions)
    report = report if report is not None else WalkReport()
    for given in paths:
        if isinstance(given, PathList):
            for listed in given:
                yield from _expand(listed, wanted, report)
            continue
        text = _text(given)
        if is_manifest(text) and os.path.isfile(text):
            yield from _manifest_items(text)
        else:
            yield from _expand(text, wanted, report)


def manifests_in(paths: Paths) -> list[str]:
    """The manifests among ``paths`` when they are a list (or one path); a lazy iterable is not read."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)):
        return []
    texts = [_text(given) for given in paths if not isinstance(given, PathList)]
    return [text for text in texts if is_manifest(text) and os.path.isfile(text)]


def carried_columns(paths: Paths) -> list[str]:
    """The columns the manifests among ``paths`` carry (in order of first appearance); ManifestError for a
    manifest that cannot be used."""
    columns: list[str] = []
    for manifest in manifests_in(paths):
        columns += [name for name in manifest_columns(manifest) if name not in columns]
    return columns


def _text(given: str | bytes | os.PathLike[str]) -> str:
    text = os.fspath(given)
    return os.fsdecode(text) if isinstance(text, bytes) else text


def _expand(text: str, wanted: frozenset[str], report: WalkReport) -> Iterator[InputItem]:
    if os.path.isdir(text):
        yield from _walk(text, wanted, report)
    else:
        yield InputItem(text)


def _manifest_items(manifest: str) -> Iterator[InputItem]:
    """A manifest's entries as items (a URI is an error row on this engine); one error row if it breaks."""
    try:
        for entry, carried in manifest_entries(manifest):
            if is_uri(entry):
                yield InputItem(entry, uri_error(entry), carried=carried)
            else:
                yield InputItem(entry, None, source_of(entry, manifest), carried)
    except ManifestError as exc:
        yield InputItem(manifest, str(exc))


def _walk(top: str, extensions: frozenset[str], report: WalkReport) -> Iterator[InputItem]:
    seen: set[tuple[int, int]] = set()
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            info = os.stat(folder)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                report.repeated_folders.append(path_label(folder))
                continue
            seen.add(key)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            yield InputItem(folder, f"{path_label(folder)}: cannot list folder ({exc.strerror or exc})")
            continue
        if any(entry.name == SKIP_MARKER for entry in entries):
            report.marked_folders.append(path_label(folder))
            continue
        folders = []
        for entry in entries:
            if _is_folder(entry):
                folders.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() in extensions:
                yield InputItem(entry.path)
            else:
                report.skip(entry.path)
        pending.extend(reversed(folders))


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """A folder, or a symlink to one (a broken or unreadable link is a file: its row says why)."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def read_path_list(stream: BinaryIO) -> Iterator[str]:
    """Paths listed one per line (``find ... | nima-rt score -``), read lazily as bytes and decoded like
    the file system's own names (``os.fsdecode``), so names that are not UTF-8 survive. A trailing
    ``\\r`` (lists written on Windows) is dropped; blank lines, and lines of nothing but whitespace, are
    skipped (a name is kept as it is otherwise, leading and trailing spaces included)."""
    for line in stream:
        path = line.rstrip(b"\n").removesuffix(b"\r")
        if path.strip():
            yield os.fsdecode(path)
