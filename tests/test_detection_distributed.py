"""Two CPU processes under torchrun (gloo): synchronised BN and DDP in the torchvision detection engine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, torch, torch.distributed as dist
    from pathlib import Path
    dist.init_process_group("gloo")
    from vicreg_bench.data.registry import open_detection
    from vicreg_bench.detection.c4_model import build_c4_faster_rcnn
    from vicreg_bench.detection.rcnn_parts import IMAGENET_MEAN, IMAGENET_STD
    from vicreg_bench.detection.schedule import VOC07_12_C4, shortened, linear_scaled
    from vicreg_bench.detection.sync_bn import NaiveSyncBatchNorm
    from vicreg_bench.detection.transforms import protocol_sizes, VOC_MIN_SIZES_TRAIN
    from vicreg_bench.detection.tv_data import ConcatDetection
    from vicreg_bench.detection.tv_engine import EngineSettings, train_detector
    from vicreg_bench.models import build_resnet
    root, work = Path(sys.argv[1]), Path(sys.argv[2])
    torch.manual_seed(0)
    model = build_c4_faster_rcnn(build_resnet("resnet18"), 20, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, roi_per_image=16)
    s = EngineSettings(schedule=shortened(linear_scaled(VOC07_12_C4, 2), 1), sizes=protocol_sizes(VOC_MIN_SIZES_TRAIN, 0.1),
                       checkpoint_period=1, precise_bn_iters=1, num_workers=0, box_offset=1.0, fingerprint="t")
    model, res = train_detector(model, ConcatDetection([open_detection("voc2007", root, "trainval")]), s, work, "cpu", log=lambda m: None)
    bn = [m for m in model.modules() if isinstance(m, NaiveSyncBatchNorm)]
    w = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [None, None]
    dist.all_gather_object(gathered, (float(w.sum()), float(bn[0].running_mean.sum())))
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps({"n_bn": len(bn), "done": res.iterations_done, "per_rank": gathered}))
    from vicreg_bench.distributed import cleanup
    cleanup()
    """
)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_train_in_sync(synthetic_root, tmp_path):
    script = tmp_path / "train2.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(synthetic_root), str(tmp_path / "work")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["n_bn"] > 0 and out["done"] == 1
    (w0, bn0), (w1, bn1) = out["per_rank"]
    assert w0 == pytest.approx(w1, rel=1e-6) and bn0 == pytest.approx(bn1, rel=1e-6)  # DDP + synchronised BN agree
    assert (tmp_path / "work" / "checkpoint_last.pth").is_file()
