"""Train and evaluate a detectron2 detector with our configs (the detectron2 engine's launcher).

    python -m vicreg_bench.detection.d2_train_net --config-file configs/detectron2/voc07_12_faster_rcnn_R50_C4.yaml \
        --num-gpus 8 [--num-machines M --machine-rank R --dist-url URL] [--data-root DIR] [--resume] \
        MODEL.WEIGHTS converted.pkl [KEY VALUE ...]

It does what MoCo's detection/train_net.py does, on detectron2's own `launch` (multi-GPU, multi-node):
registers the extra-norm Res5 head (`d2_plugin`), trains with DefaultTrainer, evaluates VOC with
PascalVOCDetectionEvaluator and COCO with COCOEvaluator (boxes and masks), and writes the final AP to
OUTPUT_DIR/vicreg_bench_d2_results.json. The configs name detectron2's builtin datasets (voc_2007_trainval,
coco_2017_train, ...); the launcher registers those splits from the data root (`--data-root`, else
$VICREG_BENCH_DATA, else $DETECTRON2_DATASETS) under vicreg_bench_* names and trains on them, so a data root
whose COCO categories are not COCO's 80 works too (`d2_datasets`). On a machine without a CUDA GPU pass
MODEL.DEVICE cpu with --num-gpus 1 (one process; SyncBN and naiveSyncBN then act as plain BN).
detectron2 is needed only to run this, not to read `--help`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

RESULTS_NAME = "vicreg_bench_d2_results.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vicreg_bench.detection.d2_train_net", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="detectron2 YAML config (configs/detectron2/*.yaml)")
    p.add_argument("--num-gpus", type=int, default=1, help="GPUs per machine")
    p.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    p.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (0 .. num-machines - 1)")
    p.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0; 'auto' for one machine")
    p.add_argument("--data-root", default=None,
                   help="the datasets' root (default: $VICREG_BENCH_DATA, else $DETECTRON2_DATASETS, else ./datasets)")
    p.add_argument("--resume", action="store_true", help="resume from OUTPUT_DIR/last_checkpoint")
    p.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS without training")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x.pkl")
    return p


def data_root(args) -> str:
    """Where the datasets are: --data-root, else $VICREG_BENCH_DATA, else $DETECTRON2_DATASETS, else ./datasets."""
    return args.data_root or os.environ.get("VICREG_BENCH_DATA") or os.environ.get("DETECTRON2_DATASETS") or "datasets"


def setup_cfg(args):
    from detectron2.config import get_cfg
    from detectron2.engine import default_setup

    from vicreg_bench.detection.d2_datasets import project_names

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.DATASETS.TRAIN = project_names(cfg.DATASETS.TRAIN, data_root(args))
    cfg.DATASETS.TEST = project_names(cfg.DATASETS.TEST, data_root(args))
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def _trainer_class():
    from detectron2.engine import DefaultTrainer

    from vicreg_bench.detection.d2_datasets import evaluator_for

    class Trainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            return evaluator_for(dataset_name, output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))

    return Trainer


def main(args) -> dict:
    """Runs in every process that detectron2's launch starts."""
    from vicreg_bench.detection import d2_plugin

    d2_plugin.register()
    import detectron2.utils.comm as comm
    from detectron2.checkpoint import DetectionCheckpointer

    cfg = setup_cfg(args)
    Trainer = _trainer_class()
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        # DefaultTrainer.train() returns results only with TEST.EXPECTED_RESULTS; the final EvalHook keeps them here
        results = getattr(trainer, "_last_eval_results", None)
    if comm.is_main_process():
        out = Path(cfg.OUTPUT_DIR) / RESULTS_NAME
        out.parent.mkdir(parents=True, exist_ok=True)
        plain = json.loads(json.dumps(results or {}, default=float))
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"results": plain, "config": cfg.dump()}, indent=2))
        os.replace(tmp, out)
    return results


def launch_problem(args, device: str, visible_gpus: int) -> str | None:
    """Why detectron2's `launch` would fail (an assert deep inside it, or a CUDA error) with these
    arguments, or None. `device` is MODEL.DEVICE; detectron2 binds every process it launches to one GPU."""
    if args.num_machines > 1 and args.dist_url == "auto":
        return "--num-machines > 1 needs --dist-url tcp://HOST:PORT (an address of machine 0 that every machine reaches)"
    if not 0 <= args.machine_rank < args.num_machines:
        return f"--machine-rank {args.machine_rank}: expected 0 .. {args.num_machines - 1} (--num-machines {args.num_machines})"
    if device == "cpu":
        if args.num_gpus > 1 or args.num_machines > 1:
            return "MODEL.DEVICE cpu runs one process: use --num-gpus 1 --num-machines 1 (detectron2 binds each process to a GPU)"
        return None
    if visible_gpus == 0:
        return f"MODEL.DEVICE {device} but no CUDA GPU is visible: pass MODEL.DEVICE cpu (one process, slow) or run where GPUs are"
    if args.num_gpus > visible_gpus:
        return f"--num-gpus {args.num_gpus} but only {visible_gpus} CUDA GPU(s) are visible"
    return None


def _device(opts: list[str]) -> str:
    """MODEL.DEVICE as the KEY VALUE overrides set it (our configs leave detectron2's default, cuda)."""
    values = [v for k, v in zip(opts[0::2], opts[1::2]) if k == "MODEL.DEVICE"]
    return values[-1] if values else "cuda"


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.config_file).is_file():
        print(f"d2_train_net: error: --config-file {args.config_file}: no such file", file=sys.stderr)
        return 2
    import torch

    problem = launch_problem(args, _device(args.opts), torch.cuda.device_count())
    if problem:
        print(f"d2_train_net: error: {problem}", file=sys.stderr)
        return 2
    if args.data_root or os.environ.get("VICREG_BENCH_DATA"):  # for datasets a user registers from it
        os.environ["DETECTRON2_DATASETS"] = str(Path(data_root(args)).resolve())
    from vicreg_bench.detection.d2_plugin import require_detectron2
    from vicreg_bench.errors import UserError

    try:
        require_detectron2()
    except UserError as e:
        print(f"d2_train_net: error: {e}", file=sys.stderr)
        return 2
    from detectron2.engine import launch

    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
