"""The feature cache: keys made of everything that changes the features, and one sharded entry per key.

A key hashes the checkpoint sha256 and the digest of the loaded weights, the backbone's arch and the layer
read from it, the dataset manifest and item order, the split, the transform and its parameters, and the
compute dtype. An entry is
written in shards (each atomically); an interrupted extraction resumes at the first missing shard, and
an entry counts as complete only once its `complete.json` exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from vicreg_bench.fileio import atomic_path, atomic_write_json

CACHE_FORMAT_VERSION = 2  # 2: the backbone's arch is part of the key
LAYER = "res5avg"
DEFAULT_SHARD_SIZE = 4096


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



def order_sha256(dataset) -> str:
    """sha256 of the dataset's relative paths in item order: cached rows are stored by item index, so a
    reader that lists the same files in another order must not reuse them (the manifest is order-free)."""
    h = hashlib.sha256()
    for rel, _ in dataset.samples:
        h.update(str(rel).encode())
        h.update(b"\n")
    return h.hexdigest()


def cache_key(*, ckpt_sha256: str, weights_sha256: str, dataset: str, manifest_sha256: str, split: str,
              transform: dict, precision: str, layer: str = LAYER, order_sha256: str = "",
              arch: str = "") -> tuple[str, dict]:
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
        "arch": arch,
        "layer": layer,
        "dtype": precision,
    }
    blob = json.dumps(desc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest(), desc


def default_cache_dir() -> Path:
    env = os.environ.get("VICREG_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vicreg-bench" / "features"



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

def read_index(entry: CacheEntry, num_shards: int) -> tuple[np.ndarray, list[dict]]:
    """Item indices of the stored rows and the skipped files, without loading any features."""
    idx, skipped = [], []
    for s in range(num_shards):
        with np.load(entry.shard_file(s), allow_pickle=False) as z:
            idx.append(z["indices"])
            skipped += json.loads(str(z["skipped"]))
    return (np.concatenate(idx) if idx else np.zeros((0,), dtype=np.int64)), skipped


def read_features(entry: CacheEntry, num_shards: int, num_rows: int) -> np.ndarray:
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



def remove_entry(cache_dir: str | os.PathLike, key: str) -> None:
    shutil.rmtree(CacheEntry(cache_dir, key).dir, ignore_errors=True)

