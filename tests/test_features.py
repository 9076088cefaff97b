"""Feature extraction and its cache: equal to a plain forward pass, reused, resumable, never half-read,
bad images skipped and listed, and 2 processes (torchrun + gloo) equal to 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vicreg_bench.data.base import ClassificationDataset
from vicreg_bench.errors import UserError
from vicreg_bench.features.cache import CacheEntry, cache_key, order_sha256, weights_digest
from vicreg_bench.features.extract import build_frozen_trunk, features_for_dataset
from vicreg_bench.features.transforms import build_transform

ROOT = Path(__file__).resolve().parents[1]
SIZE, RESIZE = 32, 36


def samples_for(n: int) -> list[tuple[str, int]]:
    return [(f"c{i % 3}/img{i:03d}.png", i % 3) for i in range(n)]


def write_images(root: Path, n: int, seed: int = 0, bad: tuple[int, ...] = ()) -> None:
    rng = np.random.default_rng(seed)
    for i, (rel, _) in enumerate(samples_for(n)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if i in bad:
            (root / rel).write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / rel)


def open_tiny(root: Path, n: int = 21, on_bad_image: str = "error"):
    tf, params = build_transform("eval", size=SIZE, resize=RESIZE)
    ds = ClassificationDataset(root, samples_for(n), ["c0", "c1", "c2"], split="train", transform=tf,
                               on_bad_image=on_bad_image)
    return ds, params


def tiny_dataset(root: Path, n: int = 21, bad: tuple[int, ...] = (), on_bad_image: str = "error"):
    write_images(root, n, bad=bad)
    return open_tiny(root, n, on_bad_image)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trunk_state(resnet18_state) -> dict:
    return resnet18_state


def extract(ds, params, state, cache, **kw):
    kw.setdefault("shard_size", 8)
    return features_for_dataset(
        lambda: build_frozen_trunk(state, "resnet18", "cpu"), ds, dataset_name="tiny", transform_params=params,
        ckpt_sha256="0" * 64, weights_sha256=weights_digest(state), cache_dir=cache, device="cpu",
        batch_size=5, workers=0, progress=False, **kw)


def direct_features(ds, state) -> np.ndarray:
    model = build_frozen_trunk(state, "resnet18", "cpu")
    with torch.no_grad():
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        return model(x).numpy()


def test_features_equal_forward_pass_and_cache_is_reused(tmp_path, trunk_state):
    ds, params = tiny_dataset(tmp_path / "data")
    fs = extract(ds, params, trunk_state, tmp_path / "cache")
    assert not fs.from_cache
    assert fs.features.shape == (21, 512) and fs.features.dtype == np.float32
    np.testing.assert_allclose(fs.features, direct_features(ds, trunk_state), rtol=1e-5, atol=1e-5)
    assert fs.labels.tolist() == [i % 3 for i in range(21)]
    assert fs.paths[4] == "c1/img004.png"
    assert fs.throughput["images"] == 21 and fs.throughput["images_per_s"] > 0
    assert fs.manifest_sha256 == ds.manifest_sha256()

    again = extract(ds, params, trunk_state, tmp_path / "cache")
    assert again.from_cache and again.key == fs.key
    np.testing.assert_array_equal(again.features, fs.features)


def test_reordered_dataset_does_not_reuse_cached_rows(tmp_path, trunk_state):
    ds, params = tiny_dataset(tmp_path / "data", n=9)
    fs = extract(ds, params, trunk_state, tmp_path / "cache")
    ds.samples = list(reversed(ds.samples))  # same files and labels (same manifest), another item order
    rev = extract(ds, params, trunk_state, tmp_path / "cache")
    assert not rev.from_cache and rev.manifest_sha256 == fs.manifest_sha256
    assert rev.paths == list(reversed(fs.paths)) and rev.labels.tolist() == list(reversed(fs.labels.tolist()))
    np.testing.assert_allclose(rev.features[::-1], fs.features, rtol=1e-5, atol=1e-5)


def test_cache_key_follows_everything_that_changes_features(trunk_state):
    base = dict(ckpt_sha256="a" * 64, weights_sha256="w", dataset="imagenet", manifest_sha256="m", split="val",
                transform=build_transform("eval", size=SIZE, resize=RESIZE)[1], precision="fp32")
    key = cache_key(**base)[0]
    for change in [dict(ckpt_sha256="b" * 64), dict(weights_sha256="v"), dict(manifest_sha256="n"),
                   dict(split="train"), dict(precision="bf16"), dict(layer="res4avg"), dict(order_sha256="o"),
                   dict(transform=build_transform("knn", size=SIZE, resize=RESIZE)[1]),
                   dict(transform=build_transform("eval", size=SIZE, resize=RESIZE + 4)[1]),
                   dict(transform=build_transform("eval", size=SIZE, resize=RESIZE, normalize=False)[1])]:
        assert cache_key(**{**base, **change})[0] != key, change
    other = {k: v.clone() for k, v in trunk_state.items()}
    other["conv1.weight"][0, 0, 0, 0] += 1
    assert weights_digest(other) != weights_digest(trunk_state)


def test_interrupted_extraction_resumes_and_is_never_read_half_written(tmp_path, trunk_state):
    ds, params = tiny_dataset(tmp_path / "data")
    reference = extract(ds, params, trunk_state, tmp_path / "ref").features

    written: list[int] = []

    def kill_after_two(s: int) -> None:
        written.append(s)
        if len(written) == 2:
            raise KeyboardInterrupt  # like Ctrl-C / a killed job, right after the 2nd shard hit the disk

    with pytest.raises(KeyboardInterrupt):
        extract(ds, params, trunk_state, tmp_path / "cache", on_shard_written=kill_after_two)
    entry = CacheEntry(tmp_path / "cache", reference_key(ds, params, trunk_state))
    assert not entry.is_complete()  # no completion marker -> never read as a finished extraction
    assert sorted(p.name for p in entry.dir.glob("shard_*.npz")) == ["shard_00000.npz", "shard_00001.npz"]
    assert not list(entry.dir.glob("*.tmp"))  # the atomic writes left no temporary files

    resumed: list[int] = []
    fs = extract(ds, params, trunk_state, tmp_path / "cache", on_shard_written=resumed.append)
    assert resumed == [2]  # 21 images in shards of 8: only the third one was left to do
    assert fs.throughput["images"] == 5
    np.testing.assert_array_equal(fs.features, reference)

    # A shard that cannot be read is recomputed, and an entry without complete.json is not trusted.
    entry.complete_file.unlink()
    entry.shard_file(1).write_bytes(b"garbage")
    redone: list[int] = []
    fs = extract(ds, params, trunk_state, tmp_path / "cache", on_shard_written=redone.append)
    assert redone == [1] and not fs.from_cache
    np.testing.assert_array_equal(fs.features, reference)


def reference_key(ds, params, state) -> str:
    return cache_key(ckpt_sha256="0" * 64, weights_sha256=weights_digest(state), dataset="tiny",
                     manifest_sha256=ds.manifest_sha256(), split="train", transform=params, precision="fp32",
                     order_sha256=order_sha256(ds))[0]


def test_bad_images_error_or_skip(tmp_path, trunk_state):
    ds, params = tiny_dataset(tmp_path / "data", n=12, bad=(3, 10))
    with pytest.raises(UserError, match=r"img003\.png.*--on-bad-image skip"):
        extract(ds, params, trunk_state, tmp_path / "cache")
    ds.on_bad_image = "skip"
    fs = extract(ds, params, trunk_state, tmp_path / "cache")
    assert fs.features.shape[0] == 10
    assert [Path(s["path"]).name for s in fs.skipped] == ["img003.png", "img010.png"]
    assert "img003.png" not in " ".join(fs.paths) and len(fs.paths) == 10
    assert fs.labels.tolist() == [i % 3 for i in range(12) if i not in (3, 10)]


DIST_SCRIPT = r"""
import sys, torch
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_features as tf
from vicreg_bench import distributed as D
from vicreg_bench.models import build_resnet
D.init_from_env("cpu")
torch.set_num_threads(1)
torch.manual_seed(0)
state = build_resnet("resnet18").state_dict()
ds, params = tf.open_tiny(Path(sys.argv[2]))
fs = tf.extract(ds, params, state, Path(sys.argv[3]))
assert fs.features.shape[0] == len(ds)
if D.is_main():
    import numpy as np
    np.save(sys.argv[4], fs.features)
D.cleanup()
"""


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_extract_the_same_features_as_one(tmp_path, trunk_state):
    data = tmp_path / "data"
    ds, params = tiny_dataset(data)
    one = extract(ds, params, trunk_state, tmp_path / "cache1").features
    script = tmp_path / "dist_extract.py"
    script.write_text(DIST_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "two.npy"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(Path(__file__).parent), str(data), str(tmp_path / "cache2"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = np.load(out)
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)
    # the shards were really split: 3 shards of 8, rank 0 wrote 0 and 2, rank 1 wrote 1 (all present)
    done = json.loads(next((tmp_path / "cache2").glob("*/*/complete.json")).read_text())
    assert done["throughput"]["num_processes"] == 2 and done["num_shards"] == 3


def test_extract_command_writes_a_feature_file_the_knn_command_reads(tiny_checkpoints, synthetic_root, tmp_path, capsys):
    from vicreg_bench.cli import main as cli_main
    from vicreg_bench.features.files import load_feature_file

    def extract_cmd(split: str, out: Path, *extra: str) -> int:
        return cli_main(["extract", "--ckpt", str(tiny_checkpoints["random"]), "--dataset", "imagenet", "--split", split,
                         "--data-root", str(synthetic_root), "-o", str(out), "--device", "cpu", "--image-size", "32",
                         "--workers", "0", "--transform", "knn", "--cache-dir", str(tmp_path / "cache"), *extra])

    assert extract_cmd("train", tmp_path / "train.npz") == 0
    assert extract_cmd("val", tmp_path / "val.npz") == 0
    val = load_feature_file(tmp_path / "val.npz", "indices")
    assert val.features.shape == (30, 512) and val.labels.shape == (30,) and len(val.class_names) == 10
    assert extract_cmd("val", tmp_path / "val.npz") == 2  # never overwritten without --force
    assert "--force" in capsys.readouterr().err
    assert extract_cmd("val", tmp_path / "val.npz", "--force") == 0
    assert "from cache" in capsys.readouterr().out
    assert cli_main(["knn", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "val.npz"),
                     "--k", "10", "20", "--json", str(tmp_path / "knn.json")]) == 0
    assert json.loads((tmp_path / "knn.json").read_text())


def test_single_process_helpers():
    from vicreg_bench import distributed as D

    assert (D.get_rank(), D.get_world_size(), D.is_main()) == (0, 1, True)
    items = list(range(7))
    assert D.shard(items, 0, 3) == [0, 3, 6] and D.shard(items, 2, 3) == [2, 5]
    assert sorted(sum((D.shard(items, r, 3) for r in range(3)), [])) == items
    assert D.split_batch(256, 8) == 32
    with pytest.raises(ValueError, match="not divisible"):
        D.split_batch(256, 3)
    assert D.all_gather_objects({"a": 1}) == [{"a": 1}] and D.broadcast_object(5) == 5
    t = torch.tensor([1.0, 2.0])
    assert D.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]


@pytest.mark.slow
def test_extraction_killed_with_sigkill_resumes(tiny_checkpoints, synthetic_root, tmp_path):
    """A real `kill -9` in the middle of `vicreg-bench extract`: the entry stays incomplete, and the next
    extraction computes only the missing shards and gives the same features as an uninterrupted one."""
    import signal
    import time

    from vicreg_bench.checkpoints import load_backbone
    from vicreg_bench.features import FeatureExtractor

    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "vicreg_bench.cli", "extract", "--ckpt", str(tiny_checkpoints["random"]),
           "--dataset", "imagenet", "--split", "train", "--data-root", str(synthetic_root),
           "-o", str(tmp_path / "never.npz"), "--device", "cpu", "--image-size", "64", "--workers", "0",
           "--batch-size", "4", "--shard-size", "4", "--cache-dir", str(cache)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(cache.glob("*/*/shard_*.npz"))) < 2:
            assert proc.poll() is None, "extraction ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    entry_dir = next(cache.glob("*/*/meta.json")).parent
    done_before = len(list(entry_dir.glob("shard_*.npz")))
    assert not (entry_dir / "complete.json").exists() and 2 <= done_before < 15

    state, info = load_backbone(tiny_checkpoints["random"])
    common = dict(device="cpu", image_size=64, resize=73, batch_size=4, workers=0, shard_size=4, progress=False)
    resumed = FeatureExtractor(state, info, data_root=synthetic_root, cache_dir=cache, **common)("imagenet", "train")
    assert resumed.throughput["images"] == 60 - 4 * done_before  # only the missing shards were computed
    fresh = FeatureExtractor(state, info, data_root=synthetic_root, cache_dir=tmp_path / "fresh", **common)(
        "imagenet", "train")
    assert resumed.key == fresh.key
    np.testing.assert_array_equal(resumed.features, fresh.features)
