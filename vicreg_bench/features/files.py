"""Feature files (`.npz`) for the `knn`, `svm` and `linear` commands: load, validate, save.

Format (DESIGN.md): `features` N x D float32; `labels` either class indices (N,) for k-NN and the
linear probe, or N x C int8 in VOC's own encoding (1 present, -1 absent, 0 difficult) for the VOC07
SVM; optional `class_names` (C strings). Other keys (e.g. `paths`) are allowed and ignored.

Every problem is reported as one UserError line naming the file and what was expected, because
these files usually come from a user's own extraction code.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_path

LabelKind = Literal["indices", "voc"]


@dataclass
class FeatureFile:
    path: Path
    features: np.ndarray  # N x D float32, C-contiguous
    labels: np.ndarray  # (N,) int64 class indices, or N x C int8 in {-1, 0, 1}
    class_names: list[str] | None

    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def summary(self) -> dict:
        """What the JSON outputs record about an input file."""
        return {"path": str(self.path), "num_samples": self.num_samples, "dim": self.dim}


def _shape(a: np.ndarray) -> str:
    return " x ".join(str(s) for s in a.shape) if a.ndim else "a scalar"


def load_feature_file(path: str | Path, kind: LabelKind, flag: str = "--train") -> FeatureFile:
    """Read and check one `.npz` feature file; `kind` says which label format the command needs."""
    path = Path(path)
    where = f"{flag} {path}"
    if not path.is_file():
        raise UserError(f"{where}: no such file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"PK"):  # np.load would fall back to unpickling anything that is not a zip
        what = "a single .npy array" if magic == b"\x93NUMPY" else ("an empty file" if not magic else "not a zip archive")
        raise UserError(f"{where}: {what}; expected an .npz archive (numpy.savez) with 'features' and 'labels'")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in ("features", "labels") if k not in keys]
            if missing:
                raise UserError(
                    f"{where}: missing key(s) {', '.join(missing)}; a feature file needs 'features' (N x D float32) "
                    f"and 'labels' (found: {', '.join(sorted(keys)) or 'nothing'})"
                )
            features = npz["features"]
            labels = npz["labels"]
            class_names_raw = npz["class_names"] if "class_names" in keys else None
    except UserError:
        raise
    except ValueError as e:  # object arrays need pickle, which we refuse
        raise UserError(f"{where}: cannot read ({e}); store plain numeric/string arrays, not Python objects") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"{where}: not a readable .npz file ({e})") from None

    features = _check_features(features, where)
    n = features.shape[0]
    labels = _check_labels(labels, n, kind, where)
    class_names = _check_class_names(class_names_raw, labels, kind, where)
    return FeatureFile(path=path, features=features, labels=labels, class_names=class_names)


def _check_features(features: np.ndarray, where: str) -> np.ndarray:
    if features.ndim != 2:
        raise UserError(f"{where}: 'features' must be N x D (2-D), got {_shape(features)}")
    if not np.issubdtype(features.dtype, np.floating):
        raise UserError(f"{where}: 'features' must be float32 (any float type is accepted), got {features.dtype}")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise UserError(f"{where}: 'features' is empty ({_shape(features)})")
    features = np.ascontiguousarray(features, dtype=np.float32)
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise UserError(f"{where}: 'features' has NaN or infinite values in {bad.size} row(s), first row {int(bad[0])}")
    return features


def _check_labels(labels: np.ndarray, n: int, kind: LabelKind, where: str) -> np.ndarray:
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise UserError(f"{where}: 'labels' must be integers, got non-integral {labels.dtype} values")
    elif labels.dtype.kind not in "iub":
        raise UserError(f"{where}: 'labels' must be integers, got {labels.dtype}")
    if labels.shape[:1] != (n,):
        raise UserError(f"{where}: 'labels' has {_shape(labels)} entries but 'features' has {n} rows")
    if kind == "indices":
        if labels.ndim != 1:
            raise UserError(
                f"{where}: 'labels' must be class indices of shape ({n},), got {_shape(labels)} "
                "(an N x C label matrix is the VOC07 SVM format: use `vicreg-bench svm`)"
            )
        labels = labels.astype(np.int64)
        if labels.min() < 0:
            raise UserError(f"{where}: 'labels' must be class indices >= 0, found {int(labels.min())}")
        return labels
    if labels.ndim != 2:
        raise UserError(
            f"{where}: 'labels' must be N x C in VOC encoding (1 present, -1 absent, 0 difficult), got {_shape(labels)} "
            "(class indices are the k-NN / linear format)"
        )
    values = np.unique(labels)
    bad = [int(v) for v in values if v not in (-1, 0, 1)]
    if bad:
        raise UserError(f"{where}: 'labels' must only hold 1 (present), -1 (absent), 0 (difficult); found {bad[:5]}")
    return labels.astype(np.int8)


def _check_class_names(raw: np.ndarray | None, labels: np.ndarray, kind: LabelKind, where: str) -> list[str] | None:
    if raw is None:
        return None
    if raw.ndim != 1 or raw.dtype.kind not in "US":
        raise UserError(f"{where}: 'class_names' must be a 1-D array of strings, got {raw.dtype} {_shape(raw)}")
    names = [str(x.decode() if isinstance(x, bytes) else x) for x in raw.tolist()]
    if kind == "voc" and len(names) != labels.shape[1]:
        raise UserError(f"{where}: 'class_names' has {len(names)} names but 'labels' has {labels.shape[1]} columns")
    if kind == "indices" and len(names) <= int(labels.max()):
        raise UserError(f"{where}: 'class_names' has {len(names)} names but 'labels' uses class index {int(labels.max())}")
    return names


def check_compatible(train: FeatureFile, test: FeatureFile) -> None:
    """Train and test must live in the same feature space (and, for VOC, the same classes)."""
    if train.dim != test.dim:
        raise UserError(
            f"--train {train.path} has {train.dim}-d features but --test {test.path} has {test.dim}-d: "
            "both must come from the same backbone and layer"
        )
    if train.labels.ndim == 2 and train.labels.shape[1] != test.labels.shape[1]:
        raise UserError(
            f"--train {train.path} has {train.labels.shape[1]} classes but --test {test.path} has {test.labels.shape[1]}"
        )
    if train.class_names and test.class_names and train.class_names != test.class_names:
        if train.labels.ndim == 2 or train.class_names[: len(test.class_names)] != test.class_names:
            raise UserError(f"--train {train.path} and --test {test.path} list different 'class_names'")


def save_feature_file(
    path: str | Path,
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    **extra: np.ndarray,
) -> None:
    """Write a feature file atomically (uncompressed npz; loads fast and memory-maps well)."""
    arrays = {"features": np.asarray(features, dtype=np.float32), "labels": np.asarray(labels)}
    if class_names is not None:
        arrays["class_names"] = np.asarray(list(class_names), dtype=str)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
