"""The whole pipeline on an embedded synthetic dataset, on the CPU: what `make demo` runs.

    vicreg-bench demo [--out demo_out]

Stages (each one reuses what is already complete, so running the command again after an interruption
picks up where it stopped):
  1. data         the synthetic `small` suite (every dataset in its official layout) -> OUT/data
  2. random init  the backbone vicreg-train starts from (same seed, same construction), written by
                  `vicreg-train --write-init` -> OUT/checkpoints/random_init_<arch>.pth, labelled "random init"
  3. pretrain     `vicreg-train` on the synthetic ImageNet train images -> OUT/pretrain (resnet18.pth,
                  the resumable model.pth, the JSON-lines log log.jsonl), while `vicreg-bench run` evaluates
                  the random-init backbone beside it -> OUT/runs/random_init/results.json
  4. evaluate     `vicreg-bench run` on the pretrained backbone -> OUT/runs/vicreg/results.json
  5. report       the comparison table (printed, OUT/comparison.md) and the self-contained HTML report with
                  the training curves -> OUT/report.html
  6. check        the pretrained backbone must beat random init on every task's headline metric; the demo
                  says loudly which ones (if any) did not (the exit status stays 0: the pipeline worked)

The suite runs as several `run` calls per backbone (the tasks whose demo preset asks for a run of their
own, e.g. a detection task, beside the others), two processes at a time on the cores, merged into one
results JSON per backbone. Each task's scale-down is its registration's demo preset (TaskSpec.demo).
Every scale-down is recorded in the results (the comparison marks those cells as not the paper's
protocol). The defaults take about 12 minutes on a 2-core CPU; docs/demo.md has the measured times and
numbers. `--size tiny` is the one-minute smoke run of the test suite.

Modules: `budget` (what the demo scales down), `jobs` (child processes, lanes, stage timing), `pretrain`
(the vicreg-train stage), `pipeline` (the stages). `vicreg-bench demo` is `vicreg_bench.cli.demo`.
"""
