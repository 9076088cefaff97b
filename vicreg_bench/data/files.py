"""Reading list files and json, and checking that listed images exist, with errors that name file and line.

Existence checks scan each image folder once (`os.scandir`) instead of calling `stat` per file, so
checking the 2.4M Places205 entries or the 1.28M ImageNet files costs one listing per folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from vicreg_bench.data.errors import DatasetMissingError, MalformedDataError

# torchvision's ImageFolder extensions (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetMissingError(f"{path}: {what} folder not found")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetMissingError(f"{path}: {what} not found")
    return path


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines as (1-based line number, stripped text); tolerates CRLF and a missing final newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MalformedDataError(f"{path}: not a UTF-8 text file ({e})") from e
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise MalformedDataError(f"{path}: line {e.lineno} column {e.colno}: invalid JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise MalformedDataError(f"{path}: not UTF-8 JSON ({e})") from e


def parse_int(text: str, path: Path, lineno: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise MalformedDataError(f"{path}: line {lineno}: {what} {text!r} is not an integer") from None


class FolderIndex:
    """Caches one directory listing per folder; answers "does root/rel exist as a file?"."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[str, frozenset[str]] = {}

    def names(self, rel_dir: str) -> frozenset[str]:
        if rel_dir not in self._cache:
            try:
                with os.scandir(self.root / rel_dir) as it:
                    self._cache[rel_dir] = frozenset(e.name for e in it if not e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                self._cache[rel_dir] = frozenset()
        return self._cache[rel_dir]

    def exists(self, rel: str) -> bool:
        d, _, name = rel.replace("\\", "/").rpartition("/")
        return name in self.names(d)


def check_listed_images(root: Path, entries: Iterable[tuple[str, str]], what: str) -> None:
    """Raise naming the first listed image that is not under `root`; entries are (rel path, "file:line" source)."""
    index = FolderIndex(root)
    missing = [(rel, src) for rel, src in entries if not index.exists(rel)]
    if missing:
        rel, src = missing[0]
        more = f" ({len(missing)} listed images are missing in all)" if len(missing) > 1 else ""
        raise MalformedDataError(f"{src}: {what} names image {rel!r}, which does not exist under {root}{more}")


def list_class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the class sub-folders of an ImageFolder split (hidden folders ignored)."""
    with os.scandir(split_dir) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def scan_image_folder(
    dataset_root: Path, split: str, classes: list[str] | None = None
) -> tuple[list[str], list[tuple[str, int]]]:
    """ImageFolder semantics (as torchvision): `<split>/<class>/**/<image>`, class index = position in the
    sorted class list. `classes` fixes the list (e.g. val uses train's); a folder outside it is an error.
    Returns (classes, samples) with sample paths relative to `dataset_root`, sorted."""
    split_dir = require_dir(dataset_root / split, f"{split} split")
    found = list_class_folders(split_dir)
    defines_classes = classes is None  # then an empty class folder would be a class without examples
    classes = found if classes is None else classes
    index = {c: i for i, c in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    for cls in found:
        if cls not in index:
            raise MalformedDataError(
                f"{split_dir / cls}: class folder not among the {len(classes)} training classes"
            )
        n_before = len(samples)
        for dirpath, dirnames, filenames in os.walk(split_dir / cls, followlinks=True):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(dataset_root).as_posix()
            samples.extend((f"{rel_dir}/{f}", index[cls]) for f in sorted(filenames) if is_image_file(f))
        if len(samples) == n_before and defines_classes:
            raise MalformedDataError(f"{split_dir / cls}: class folder holds no image files")
    if not samples:
        raise MalformedDataError(f"{split_dir}: no images in class sub-folders (expected {split}/<class>/*.jpg)")
    return classes, samples
