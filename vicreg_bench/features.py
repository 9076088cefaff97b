"""Extract frozen res5avg features of one dataset split to a .npz file (or the shared on-disk cache).

The trunk is loaded strictly from the checkpoint, frozen and put in eval mode; images go through the
protocol's deterministic transform (`--transform`, default `eval`: the linear-probe centre crop). Features are
cached on disk under a key made of everything that changes them: checkpoint sha256 (and the digest of
the loaded weights), dataset manifest sha256, split, transform name and parameters, layer and compute
dtype. The SVM, k-NN and fast linear tasks of a run, and later runs, reuse one extraction.

An extraction is written in shards (each written atomically); an interrupted extraction resumes at the
first missing shard, and an entry counts as complete only once its `complete.json` exists. Under
`torchrun` (NCCL on GPUs, gloo on CPUs) the shards are split between processes; the result is the same
array as with one process. The cache directory must then be visible to every process (one node, or a
shared filesystem).

Example:
  vicreg-bench extract --ckpt resnet50.pth --dataset imagenet --split val --data-root /data -o val.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vicreg_bench import distributed as D
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_path, atomic_write_json

CACHE_FORMAT_VERSION = 1
LAYER = "res5avg"
DEFAULT_SHARD_SIZE = 4096

# Deterministic feature transforms, by name (random training augmentations are never cached).
#   eval             Resize(resize) + CenterCrop(size), bilinear: the linear-probe test transform
#                    (vicreg evaluate.py), also the fast protocol's training features
#   knn              Resize(resize, bicubic) + CenterCrop(size): DINO eval_knn.py
#   svm_squash       Resize(resize) then Resize((size, size)), no crop: VISSL's VOC07 SVM
#   svm_center_crop  Resize(resize) + CenterCrop(size): the paper's wording for the VOC07 SVM
TRANSFORM_NAMES = ("eval", "knn", "svm_squash", "svm_center_crop")


@dataclass
class FeatureSet:
    """Frozen features of one dataset split, in dataset order, without the images that were skipped."""

    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64 class indices, or (N, C) int8 VOC vectors (1 / -1 / 0)
    paths: list[str]  # relative to the dataset root, aligned with `features`
    manifest_sha256: str
    skipped: list[dict] = field(default_factory=list)  # [{"index", "path", "error"}] under --on-bad-image skip
    class_names: list[str] = field(default_factory=list)
    dataset: str = ""
    split: str = ""
    transform: dict = field(default_factory=dict)  # {"name", ...parameters}
    key: str = ""  # cache key
    throughput: dict = field(default_factory=dict)  # of the extraction that produced it
    from_cache: bool = False

    @property
    def num_images(self) -> int:
        return int(self.features.shape[0])

    def save_npz(self, path: str | os.PathLike) -> None:
        """The DESIGN.md feature file: features, labels, class_names (+ paths), written atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    features=self.features.astype(np.float32, copy=False),
                    labels=self.labels,
                    class_names=np.array(self.class_names, dtype=str),
                    paths=np.array(self.paths, dtype=str),
                )


# ----------------------------------------------------------------------------------------------- transforms


def build_transform(name: str, *, size: int = 224, resize: int = 256, normalize: bool = True) -> tuple[Callable, dict]:
    """The named deterministic transform and the parameters that identify it in the cache key."""
    from vicreg_bench.data import transforms as T

    if name == "eval":
        params = {"size": size, "resize": resize, "interpolation": "bilinear"}
        tf = T.eval_transform(size=size, resize=resize, interpolation="bilinear", normalize=normalize)
    elif name == "knn":
        params = {"size": size, "resize": resize, "interpolation": "bicubic"}
        tf = T.eval_transform(size=size, resize=resize, interpolation="bicubic", normalize=normalize)
    elif name in ("svm_squash", "svm_center_crop"):
        variant = name.removeprefix("svm_")
        params = {"size": size, "resize": resize, "variant": variant}
        tf = T.svm_transform(variant=variant, size=size, resize=resize, normalize=normalize)
    else:
        raise UserError(f"--transform: unknown feature transform {name!r}; expected one of {', '.join(TRANSFORM_NAMES)}")
    params = {"name": name, **params, "normalize": bool(normalize)}
    text = repr(tf)
    if " at 0x" not in text:  # a repr naming every parameter makes the key follow any change of the transform
        params["repr"] = text
    return tf, params


# ---------------------------------------------------------------------------------------------- cache keys


def weights_digest(state_dict: dict) -> str:
    """sha256 of the loaded weights (names, shapes, dtypes, bytes): two ways of loading one file differ here."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> bf16 on a GPU that supports it (else fp16), fp32 on CPU."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"--precision: expected auto, fp32, bf16 or fp16, got {precision!r}")
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def order_sha256(dataset) -> str:
    """sha256 of the dataset's relative paths in item order: cached rows are stored by item index, so a
    reader that lists the same files in another order must not reuse them (the manifest is order-free)."""
    h = hashlib.sha256()
    for rel, _ in dataset.samples:
        h.update(str(rel).encode())
        h.update(b"\n")
    return h.hexdigest()


def cache_key(*, ckpt_sha256: str, weights_sha256: str, dataset: str, manifest_sha256: str, split: str,
              transform: dict, precision: str, layer: str = LAYER, order_sha256: str = "") -> tuple[str, dict]:
    """(hex key, the description it hashes). Equal keys = equal features, up to device numerics."""
    desc = {
        "format_version": CACHE_FORMAT_VERSION,
        "checkpoint_sha256": ckpt_sha256,
        "weights_sha256": weights_sha256,
        "dataset": dataset,
        "manifest_sha256": manifest_sha256,
        "order_sha256": order_sha256,
        "split": split,
        "transform": transform,
        "layer": layer,
        "dtype": precision,
    }
    blob = json.dumps(desc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest(), desc


def default_cache_dir() -> Path:
    env = os.environ.get("VICREG_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vicreg-bench" / "features"


def default_workers(device: str) -> int:
    """DataLoader workers: enough to feed a GPU (up to 10 per process), a few on CPU (compute shares cores)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_proc = max(1, cpus // max(1, D.get_world_size()))
    if str(device).startswith("cuda"):
        return min(10, per_proc)
    return min(4, max(0, per_proc // 2))


# ------------------------------------------------------------------------------------------ the cache entry


class CacheEntry:
    """One extraction on disk: meta.json, shard_NNNNN.npz files, and complete.json once every shard exists."""

    def __init__(self, cache_dir: str | os.PathLike, key: str):
        self.key = key
        self.dir = Path(cache_dir) / key[:2] / key

    @property
    def complete_file(self) -> Path:
        return self.dir / "complete.json"

    def is_complete(self) -> bool:
        return self.complete_file.is_file()

    def shard_file(self, s: int) -> Path:
        return self.dir / f"shard_{s:05d}.npz"

    def read_complete(self) -> dict:
        return json.loads(self.complete_file.read_text())

    def prepare(self, desc: dict, num_items: int, shard_size: int) -> None:
        """Start (or continue) this entry; partial shards of a different layout are discarded."""
        meta_file = self.dir / "meta.json"
        meta = {"key": self.key, "desc": desc, "num_items": num_items, "shard_size": shard_size}
        if meta_file.is_file():
            try:
                old = json.loads(meta_file.read_text())
            except json.JSONDecodeError:
                old = None
            if old == meta:
                return
            for p in self.dir.glob("shard_*.npz"):
                p.unlink()
        atomic_write_json(meta_file, meta)

    def write_shard(self, s: int, features: np.ndarray, indices: np.ndarray, skipped: list[dict]) -> None:
        with atomic_path(self.shard_file(s)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    features=features.astype(np.float32, copy=False),
                    indices=indices.astype(np.int64, copy=False),
                    skipped=np.array(json.dumps(skipped)),
                )

    def read_shard(self, s: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        with np.load(self.shard_file(s), allow_pickle=False) as z:
            return z["features"], z["indices"], json.loads(str(z["skipped"]))

    def shard_ok(self, s: int) -> bool:
        """A shard exists and can be read (atomic writes make a torn shard impossible, but disks fail)."""
        p = self.shard_file(s)
        if not p.is_file():
            return False
        try:
            with np.load(p, allow_pickle=False) as z:
                return {"features", "indices", "skipped"} <= set(z.files)
        except Exception:
            return False


def shard_ranges(num_items: int, shard_size: int) -> list[range]:
    return [range(s, min(s + shard_size, num_items)) for s in range(0, num_items, shard_size)]


# --------------------------------------------------------------------------------------------- extraction


def build_frozen_trunk(state_dict: dict, arch: str, device: str) -> torch.nn.Module:
    """The trunk with the checkpoint loaded strictly, frozen, eval mode; channels_last on CUDA."""
    from vicreg_bench.models import build_resnet

    model = build_resnet(arch)
    model.load_state_dict(state_dict, strict=True)
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    if str(device).startswith("cuda"):
        model.to(memory_format=torch.channels_last)
    return model


def _autocast(device: str, precision: str):
    dev_type = "cuda" if str(device).startswith("cuda") else "cpu"
    if precision == "fp32":
        return torch.autocast(dev_type, enabled=False)
    return torch.autocast(dev_type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def trunk_forward(model: torch.nn.Module, images: torch.Tensor, device: str, precision: str) -> torch.Tensor:
    """res5avg of a batch as float32 on `device` (autocast in `precision`, channels_last on CUDA).

    Gradients flow when the caller enables them (fine-tuning); frozen callers wrap it in no_grad.
    """
    cuda = str(device).startswith("cuda")
    images = images.to(device, non_blocking=cuda)
    if cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    with _autocast(device, precision):
        out = model(images)
    return out.float()


@torch.no_grad()
def forward_features(model: torch.nn.Module, images: torch.Tensor, device: str, precision: str) -> torch.Tensor:
    """res5avg of a batch through a frozen trunk, as float32 on the CPU."""
    return trunk_forward(model, images, device, precision).cpu()


def _bad_image_message(e: BaseException) -> str:
    """The useful last line of an error re-raised from a DataLoader worker."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def extract_into(entry: CacheEntry, model: torch.nn.Module, dataset, *, device: str, precision: str,
                 batch_size: int, workers: int, shard_size: int, progress: bool = True,
                 desc_text: str = "extract", on_shard_written: Callable[[int], None] | None = None) -> dict:
    """Compute this rank's missing shards of `entry`; returns {"images", "seconds"} of this process's work.

    Shards are dealt round-robin to the ranks; inside a rank, one DataLoader runs over all its pending
    images in order and each shard is written as soon as its last image is done.
    """
    from tqdm import tqdm

    from vicreg_bench.data.base import BadImageError, collate_skipping_bad

    ranges = shard_ranges(len(dataset), shard_size)
    mine = [s for s in D.shard(list(range(len(ranges)))) if not entry.shard_ok(s)]
    todo = [i for s in mine for i in ranges[s]]
    stats = {"images": 0, "seconds": 0.0}
    if not todo:
        return stats
    cuda = str(device).startswith("cuda")
    # Batches never straddle shards, so every image is computed in the same batch whatever the number of
    # processes or the point a previous attempt stopped at (batch composition changes float rounding).
    batches = [list(range(b, min(b + batch_size, ranges[s].stop))) for s in mine
               for b in range(ranges[s].start, ranges[s].stop, batch_size)]
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=cuda,
        collate_fn=collate_skipping_bad,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    pending: dict[int, dict] = {s: {"feats": [], "idx": [], "bad": [], "left": len(ranges[s])} for s in mine}
    bar = tqdm(total=len(todo), unit="img", desc=desc_text, disable=not (progress and D.is_main()),
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    t0 = time.perf_counter()
    try:
        for good, bad in loader:
            rows: list[tuple[int, torch.Tensor | None, dict | None]] = []
            if good is not None:
                images, _targets, idx = good
                feats = forward_features(model, images, device, precision)
                rows += [(int(i), feats[j], None) for j, i in enumerate(idx.tolist())]
            rows += [(b.index, None, {"index": b.index, "path": b.path, "error": b.error}) for b in bad]
            for i, f, b in rows:
                s = i // shard_size
                p = pending[s]
                if f is not None:
                    p["feats"].append(f)
                    p["idx"].append(i)
                else:
                    p["bad"].append(b)
                p["left"] -= 1
                if p["left"] == 0:
                    feats_arr = (torch.stack(p["feats"]).numpy() if p["feats"]
                                 else np.zeros((0, 0), dtype=np.float32))
                    order = np.argsort(np.asarray(p["idx"], dtype=np.int64), kind="stable")
                    entry.write_shard(s, feats_arr[order] if len(order) else feats_arr,
                                      np.asarray(p["idx"], dtype=np.int64)[order],
                                      sorted(p["bad"], key=lambda d: d["index"]))
                    del pending[s]
                    if on_shard_written is not None:
                        on_shard_written(s)
            bar.update(len(rows))
            stats["images"] += len(rows)
    except BadImageError as e:
        raise UserError(f"{_bad_image_message(e)} (use --on-bad-image skip to leave such files out)") from None
    finally:
        bar.close()
    stats["seconds"] = time.perf_counter() - t0
    return stats


def _read_index(entry: CacheEntry, num_shards: int) -> tuple[np.ndarray, list[dict]]:
    """Item indices of the stored rows and the skipped files, without loading any features."""
    idx, skipped = [], []
    for s in range(num_shards):
        with np.load(entry.shard_file(s), allow_pickle=False) as z:
            idx.append(z["indices"])
            skipped += json.loads(str(z["skipped"]))
    return (np.concatenate(idx) if idx else np.zeros((0,), dtype=np.int64)), skipped


def _read_features(entry: CacheEntry, num_shards: int, num_rows: int) -> np.ndarray:
    """All stored rows in one preallocated array (ImageNet train at 2048-d is 10 GB: no second copy)."""
    out: np.ndarray | None = None
    pos = 0
    for s in range(num_shards):
        with np.load(entry.shard_file(s), allow_pickle=False) as z:
            f = z["features"]
        if not len(f):
            continue
        if out is None:
            out = np.empty((num_rows, f.shape[1]), dtype=np.float32)
        out[pos:pos + len(f)] = f
        pos += len(f)
    if pos != num_rows:
        raise RuntimeError(f"{entry.dir}: {pos} stored rows, complete.json says {num_rows}")
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _labels_of(dataset, indices: np.ndarray) -> np.ndarray:
    targets = [dataset.samples[int(i)][1] for i in indices]
    if targets and isinstance(targets[0], (np.ndarray, list, tuple)):
        return np.asarray(targets, dtype=np.int8)
    return np.asarray(targets, dtype=np.int64)


def features_for_dataset(
    model_or_builder: torch.nn.Module | Callable[[], torch.nn.Module],
    dataset,
    *,
    dataset_name: str,
    transform_params: dict,
    ckpt_sha256: str,
    weights_sha256: str,
    cache_dir: str | os.PathLike,
    device: str = "cpu",
    precision: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    on_shard_written: Callable[[int], None] | None = None,
) -> FeatureSet:
    """Features of `dataset` (already built with its transform) from the cache, extracting what is missing.

    Collective under torchrun: every rank calls it and every rank gets the full FeatureSet.
    """
    precision = resolve_precision(precision, device)
    manifest = dataset.manifest_sha256()
    key, desc = cache_key(ckpt_sha256=ckpt_sha256, weights_sha256=weights_sha256, dataset=dataset_name,
                          manifest_sha256=manifest, split=dataset.split, transform=transform_params,
                          precision=precision, order_sha256=order_sha256(dataset))
    entry = CacheEntry(cache_dir, key)
    from_cache = entry.is_complete()
    if not from_cache:
        n = len(dataset)
        if D.is_main():
            entry.prepare(desc, n, shard_size)
        D.barrier()
        meta = json.loads((entry.dir / "meta.json").read_text())
        shard_size = int(meta["shard_size"])
        model = model_or_builder() if callable(model_or_builder) and not isinstance(model_or_builder, torch.nn.Module) else model_or_builder
        batch_size = batch_size or (256 if str(device).startswith("cuda") else 64)
        workers = default_workers(device) if workers is None else workers
        text = f"extract {dataset_name}/{dataset.split} [{transform_params['name']}]"
        failed = None
        try:
            stats = extract_into(entry, model, dataset, device=device, precision=precision, batch_size=batch_size,
                                 workers=workers, shard_size=shard_size, progress=progress, desc_text=text,
                                 on_shard_written=on_shard_written)
        except BaseException as e:  # every rank must reach the barrier below or the others hang
            if not D.is_distributed():
                raise
            failed, stats = e, {"images": 0, "seconds": 0.0}
        if D.any_rank(failed is not None):
            if failed is not None:
                raise failed
            raise RuntimeError("feature extraction failed on another process")
        all_stats = D.all_gather_objects(stats)
        if D.is_main():
            num_shards = len(shard_ranges(n, shard_size))
            missing = [s for s in range(num_shards) if not entry.shard_ok(s)]
            if missing:
                raise RuntimeError(f"{entry.dir}: shards {missing[:10]} missing after extraction")
            images = sum(s["images"] for s in all_stats)
            seconds = max(s["seconds"] for s in all_stats)
            idx, skipped = _read_index(entry, num_shards)
            atomic_write_json(entry.complete_file, {
                "key": key,
                "desc": desc,
                "num_items": n,
                "num_features": int(len(idx)),
                "num_shards": num_shards,
                "shard_size": shard_size,
                "skipped": skipped,
                "throughput": {
                    "images_per_s": round(images / seconds, 2) if seconds > 0 else None,
                    "images": images,
                    "seconds": round(seconds, 3),
                    "num_processes": D.get_world_size(),
                    "device": str(device),
                    "precision": precision,
                    "batch_size": batch_size,
                    "workers": workers,
                },
            })
        D.barrier()
    info = entry.read_complete()
    idx, skipped = _read_index(entry, int(info["num_shards"]))
    feats = _read_features(entry, int(info["num_shards"]), len(idx))
    return FeatureSet(
        features=feats,
        labels=_labels_of(dataset, idx),
        paths=[str(dataset.samples[int(i)][0]) for i in idx],
        manifest_sha256=manifest,
        skipped=skipped,
        class_names=list(getattr(dataset, "classes", []) or []),
        dataset=dataset_name,
        split=dataset.split,
        transform=transform_params,
        key=key,
        throughput=dict(info.get("throughput", {})),
        from_cache=from_cache,
    )


class FeatureExtractor:
    """Everything a run needs to turn (dataset, split, transform name) into a cached FeatureSet.

    Builds the trunk once (lazily), opens datasets through `vicreg_bench.data.registry`, keeps recent
    FeatureSets in memory (up to `memory_bytes`) so tasks of one run share them, and otherwise relies on
    the disk cache.
    """

    def __init__(self, state_dict: dict, info: Any, *, data_root: str | os.PathLike, cache_dir: str | os.PathLike,
                 device: str = "cpu", precision: str = "auto", image_size: int = 224, resize: int = 256,
                 batch_size: int | None = None, workers: int | None = None, on_bad_image: str = "error",
                 shard_size: int = DEFAULT_SHARD_SIZE, progress: bool = True, memory_bytes: int = 8 << 30):
        self.state_dict, self.info = state_dict, info
        self.data_root, self.cache_dir = Path(data_root), Path(cache_dir)
        self.device, self.precision = device, precision
        self.image_size, self.resize = image_size, resize
        self.batch_size, self.workers, self.on_bad_image = batch_size, workers, on_bad_image
        self.shard_size, self.progress = shard_size, progress
        self.memory_bytes = memory_bytes
        self._model: torch.nn.Module | None = None
        self._weights_sha: str | None = None
        self._memo: dict[tuple, FeatureSet] = {}

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha is None:
            self._weights_sha = weights_digest(self.state_dict)
        return self._weights_sha

    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = build_frozen_trunk(self.state_dict, self.info.arch, self.device)
        return self._model

    def transform(self, name: str) -> tuple[Callable, dict]:
        return build_transform(name, size=self.image_size, resize=self.resize,
                               normalize=bool(getattr(self.info, "normalize_input", True)))

    def open(self, dataset: str, split: str, transform: Callable | None = None):
        from vicreg_bench.data.registry import open_classification

        return open_classification(dataset, self.data_root, split, transform=transform, on_bad_image=self.on_bad_image)

    def __call__(self, dataset: str, split: str, transform_name: str = "eval") -> FeatureSet:
        memo_key = (dataset, split, transform_name)
        if memo_key in self._memo:
            return self._memo[memo_key]
        tf, params = self.transform(transform_name)
        ds = self.open(dataset, split, tf)
        fs = features_for_dataset(
            self.model, ds, dataset_name=dataset, transform_params=params,
            ckpt_sha256=self.info.sha256, weights_sha256=self.weights_sha256, cache_dir=self.cache_dir,
            device=self.device, precision=self.precision, batch_size=self.batch_size, workers=self.workers,
            shard_size=self.shard_size, progress=self.progress,
        )
        self._memo[memo_key] = fs
        # keep recent sets in memory for the next task, within a byte budget (the newest always stays)
        while len(self._memo) > 1 and sum(f.features.nbytes for f in self._memo.values()) > self.memory_bytes:
            self._memo.pop(next(iter(self._memo)))
        return fs

    def release_model(self) -> None:
        """Free the trunk (e.g. before a task that builds its own copy for fine-tuning)."""
        self._model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def remove_entry(cache_dir: str | os.PathLike, key: str) -> None:
    shutil.rmtree(CacheEntry(cache_dir, key).dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- CLI


def resolve_device(device: str) -> str:
    """auto -> cuda when available, else cpu; a CUDA request without a GPU is a user error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available here (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device: expected auto, cpu or cuda[:N], got {device!r}")
    return device


def add_extraction_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `extract` and `run`."""
    p.add_argument("--data-root", help="dataset root (default: $VICREG_BENCH_DATA); layout in the README")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache, shared by runs (default: $VICREG_BENCH_CACHE or ~/.cache/vicreg-bench/features)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="compute dtype of the frozen trunk: auto = bf16 (fp16 without bf16) on CUDA, fp32 on CPU")
    p.add_argument("--image-size", type=int, default=224, help="crop size of the transforms (paper: 224)")
    p.add_argument("--resize", type=int, default=None,
                   help="resize before the crop (paper: 256; default: image-size * 256/224)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers per process (default: from the CPU count)")
    p.add_argument("--on-bad-image", default="error", choices=("error", "skip"),
                   help="an undecodable image stops the job (error, default) or is left out and listed (skip)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                   help=f"images per feature-cache shard, the unit an interrupted extraction resumes from "
                        f"(default {DEFAULT_SHARD_SIZE})")


def default_resize(image_size: int, resize: int | None) -> int:
    return resize if resize is not None else int(round(image_size * 256 / 224))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint of any supported format (see `inspect`)")
    p.add_argument("--method", default=None, help="checkpoint method when detection guesses wrong (e.g. dino, moco_v2)")
    p.add_argument("--key", default=None, help="sub-dictionary holding the model in a full checkpoint (e.g. teacher)")
    p.add_argument("--dataset", required=True, help="imagenet, places205, inat2018 or voc2007")
    p.add_argument("--split", required=True, help="split of the dataset, e.g. train, val, trainval, test")
    p.add_argument("-o", "--output", required=True, type=Path, help="output .npz (features, labels, class_names, paths)")
    p.add_argument("--transform", default="eval", choices=TRANSFORM_NAMES,
                   help="eval (linear-probe centre crop, default), knn (bicubic, DINO), svm_squash (VISSL), svm_center_crop")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default 256 on CUDA, 64 on CPU)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    add_extraction_arguments(p)


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.checkpoints import load_backbone
    from vicreg_bench.data.registry import resolve_data_root

    if args.shard_size < 1:
        raise UserError(f"--shard-size: expected a positive integer, got {args.shard_size}")
    out = Path(args.output)
    if out.suffix != ".npz":
        raise UserError(f"-o {out}: expected a .npz file name")
    if out.exists() and not args.force:
        raise UserError(f"-o {out}: file exists (use --force to overwrite)")
    device = resolve_device(args.device)
    D.init_from_env(device)
    if device == "cuda" and D.is_distributed():
        device = f"cuda:{torch.cuda.current_device()}"
    data_root = resolve_data_root(args.data_root)
    state_dict, info = load_backbone(args.ckpt, method=args.method, key=args.key)
    extractor = FeatureExtractor(
        state_dict, info, data_root=data_root, cache_dir=args.cache_dir or default_cache_dir(), device=device,
        precision=args.precision, image_size=args.image_size, resize=default_resize(args.image_size, args.resize),
        batch_size=args.batch_size, workers=args.workers, on_bad_image=args.on_bad_image,
        shard_size=args.shard_size,
    )
    fs = extractor(args.dataset, args.split, args.transform)
    if D.is_main():
        fs.save_npz(out)
        rate = fs.throughput.get("images_per_s")
        how = "from cache" if fs.from_cache else f"{rate} images/s" if rate else "extracted"
        print(f"{out}: {fs.features.shape[0]} x {fs.features.shape[1]} features ({how})")
        if fs.skipped:
            print(f"skipped {len(fs.skipped)} undecodable image(s):", file=sys.stderr)
            for b in fs.skipped:
                print(f"  {b['path']}: {b['error']}", file=sys.stderr)
    D.barrier()
    D.cleanup()
    return 0
