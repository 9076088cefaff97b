"""Extract frozen res5avg features of a dataset split into the cache, and read them back as a FeatureSet.

The trunk is loaded strictly from the checkpoint, frozen and put in eval mode; images go through the
protocol's deterministic transform. Under `torchrun` (NCCL on GPUs, gloo on CPUs) the shards are split
between processes; the result is the same array as with one process. The cache directory must then be
visible to every process (one node, or a shared filesystem). `FeatureExtractor` is what a run holds:
(dataset, split, transform name) -> FeatureSet, sharing one trunk and recent sets between tasks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vicreg_bench import distributed as D
from vicreg_bench.errors import UserError
from vicreg_bench.features.cache import (
    DEFAULT_SHARD_SIZE,
    LAYER,
    CacheEntry,
    cache_key,
    order_sha256,
    read_features,
    read_index,
    shard_ranges,
    weights_digest,
)
from vicreg_bench.features.feature_set import FeatureSet
from vicreg_bench.features.layers import default_layer, layer_module
from vicreg_bench.features.transforms import build_transform
from vicreg_bench.fileio import atomic_write_json
from vicreg_bench.locks import FileLock, describe_holder


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> bf16 on a GPU that supports it (else fp16), fp32 on CPU."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"--precision: expected auto, fp32, bf16 or fp16, got {precision!r}")
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, and no more than a SLURM job step was given
    (SLURM_CPUS_PER_TASK; clusters without CPU binding leave the mask at the whole node)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(cpus, int(granted))) if granted.isdigit() and int(granted) > 0 else cpus


def default_workers(device: str) -> int:
    """DataLoader workers: enough to feed a GPU (up to 10 per process), a few on CPU (compute shares cores)."""
    cpus = available_cpus()
    per_proc = max(1, cpus // max(1, D.get_world_size()))
    if str(device).startswith("cuda"):
        return min(10, per_proc)
    return min(4, max(0, per_proc // 2))


def build_frozen_trunk(state_dict: dict, arch: str, device: str, layer: str | None = None) -> torch.nn.Module:
    """The backbone with the checkpoint loaded strictly, frozen, eval mode, computing `layer` (default: the
    arch's own feature, res5avg or the CLS token); channels_last on CUDA."""
    from vicreg_bench.models import build_backbone

    model = build_backbone(arch)
    model.load_state_dict(state_dict, strict=True)
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    if str(device).startswith("cuda"):
        model.to(memory_format=torch.channels_last)
    return layer_module(model, arch, layer or default_layer(arch))


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
    arch: str = "",
    layer: str = LAYER,
) -> FeatureSet:
    """Features of `dataset` (already built with its transform) from the cache, extracting what is missing.
    `arch` and `layer` name what the model computes (they are part of the cache key).

    Collective under torchrun: every rank calls it and every rank gets the full FeatureSet.
    """
    precision = resolve_precision(precision, device)
    manifest = dataset.manifest_sha256()
    key, desc = cache_key(ckpt_sha256=ckpt_sha256, weights_sha256=weights_sha256, dataset=dataset_name,
                          manifest_sha256=manifest, split=dataset.split, transform=transform_params,
                          precision=precision, order_sha256=order_sha256(dataset), arch=arch, layer=layer)
    entry = CacheEntry(cache_dir, key)
    from_cache = entry.is_complete()
    lock = None
    if not from_cache:  # one extraction per entry: another job extracting the same features is waited for
        lock = hold_extraction_lock(entry, f"extracting {dataset_name}/{dataset.split}", progress)
        from_cache = entry.is_complete()
    try:
        if not from_cache:
            _extract_entry(entry, desc, key, dataset, model_or_builder, dataset_name=dataset_name,
                           transform_params=transform_params, device=device, precision=precision,
                           batch_size=batch_size, workers=workers, shard_size=shard_size, progress=progress,
                           on_shard_written=on_shard_written)
    finally:
        if lock is not None:
            lock.release()
    info = entry.read_complete()
    idx, skipped = read_index(entry, int(info["num_shards"]))
    feats = read_features(entry, int(info["num_shards"]), len(idx))
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


def hold_extraction_lock(entry: CacheEntry, what: str, progress: bool) -> FileLock | None:
    """Rank 0 takes the entry's lock (waiting, with a message, when another process extracts it); every
    rank passes the barrier once it holds it."""
    lock = None
    if D.is_main():
        lock = FileLock(entry.dir.parent / f".{entry.key}.lock", what=what)
        if not lock.acquire(wait=False):
            if progress:
                print(f"{what}: {describe_holder(lock.holder())} is extracting these features; waiting for it",
                      file=sys.stderr, flush=True)
            lock.acquire(wait=True)
    D.barrier()
    return lock


def _extract_entry(entry: CacheEntry, desc: dict, key: str, dataset, model_or_builder, *, dataset_name: str,
                   transform_params: dict, device: str, precision: str, batch_size: int | None, workers: int | None,
                   shard_size: int, progress: bool, on_shard_written: Callable[[int], None] | None) -> None:
    """Compute the entry's missing shards (split between processes) and write its complete.json."""
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
        idx, skipped = read_index(entry, num_shards)
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
        self._backbone: torch.nn.Module | None = None
        self._models: dict[str, torch.nn.Module] = {}
        self._weights_sha: str | None = None
        self._memo: dict[tuple, FeatureSet] = {}

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha is None:
            self._weights_sha = weights_digest(self.state_dict)
        return self._weights_sha

    def model(self, layer: str | None = None) -> torch.nn.Module:
        """The frozen backbone computing `layer` (default: the arch's own feature); built once, shared."""
        layer = layer or default_layer(self.info.arch)
        if self._backbone is None:
            self._backbone = build_frozen_trunk(self.state_dict, self.info.arch, self.device)
        if layer not in self._models:
            self._models[layer] = layer_module(self._backbone, self.info.arch, layer)
        return self._models[layer]

    def transform(self, name: str) -> tuple[Callable, dict]:
        return build_transform(name, size=self.image_size, resize=self.resize,
                               normalize=bool(getattr(self.info, "normalize_input", True)))

    def open(self, dataset: str, split: str, transform: Callable | None = None):
        from vicreg_bench.data.registry import open_classification

        return open_classification(dataset, self.data_root, split, transform=transform, on_bad_image=self.on_bad_image)

    def __call__(self, dataset: str, split: str, transform_name: str = "eval", layer: str | None = None) -> FeatureSet:
        layer = layer or default_layer(self.info.arch)
        memo_key = (dataset, split, transform_name, layer)
        if memo_key in self._memo:
            return self._memo[memo_key]
        tf, params = self.transform(transform_name)
        ds = self.open(dataset, split, tf)
        fs = features_for_dataset(
            lambda: self.model(layer), ds, dataset_name=dataset, transform_params=params,
            ckpt_sha256=self.info.sha256, weights_sha256=self.weights_sha256, cache_dir=self.cache_dir,
            device=self.device, precision=self.precision, batch_size=self.batch_size, workers=self.workers,
            shard_size=self.shard_size, progress=self.progress, arch=self.info.arch, layer=layer,
        )
        self._memo[memo_key] = fs
        # keep recent sets in memory for the next task, within a byte budget (the newest always stays)
        while len(self._memo) > 1 and sum(f.features.nbytes for f in self._memo.values()) > self.memory_bytes:
            self._memo.pop(next(iter(self._memo)))
        return fs

    def release_model(self) -> None:
        """Free the trunk (e.g. before a task that builds its own copy for fine-tuning)."""
        self._backbone = None
        self._models = {}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def resolve_device(device: str) -> str:
    """auto -> cuda when available, else cpu; a CUDA request without a GPU is a user error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available here (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device: expected auto, cpu or cuda[:N], got {device!r}")
    return device
