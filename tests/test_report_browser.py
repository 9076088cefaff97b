"""The HTML report renders in a real headless browser (Debian's chromium), offline.

chromium loads the report from a file: URL with networking disabled, dumps the DOM after the load
event (the report's inline script has then recorded on <body> how many images decoded) and takes a
screenshot, which must not be blank. Without chromium the test skips, unless
VICREG_BENCH_REQUIRE_BROWSER=1 (set by .ci/run), where it fails.

VICREG_BENCH_UPDATE_SCREENSHOT=1 also writes the screenshot to docs/report.png (palette PNG, < 300 KB).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_compare import assert_offline, det, knn, linear, results, svm, write
from vicreg_bench.compare import build_table, load_runs
from vicreg_bench.errors import UserError
from vicreg_bench.compare.report import build_report
from vicreg_bench.trainlog import read_train_log
from vicreg_bench.results import task_entry

pytestmark = pytest.mark.browser  # 13 s on 2 cores (30 s when they are busy): matplotlib + two chromium runs

DOCS_PNG = Path(__file__).resolve().parents[1] / "docs" / "report.png"


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    if os.environ.get("VICREG_BENCH_REQUIRE_BROWSER") == "1":
        pytest.fail("chromium is not installed, and VICREG_BENCH_REQUIRE_BROWSER=1 requires the browser test to run "
                    "(apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); the browser test is skipped")


def run_chromium(exe: str, profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            # no name resolves: a page that needed the network could not fetch anything
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", *extra, url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
    return proc


def train_log(path: Path, epochs: int = 6, steps_per_epoch: int = 15) -> Path:
    """A log in vicreg-train's format (docs/training.md): start, step and epoch records."""
    lines = [{"type": "start", "version": 1, "args": {"arch": "resnet18", "mlp": "512-512-512", "epochs": epochs}}]
    step = 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            inv, var, cov = 0.2 + 1.5 * math.exp(-step / 40), 0.05 + 0.9 * math.exp(-step / 25), 0.02 + 0.4 * math.exp(-step / 60)
            lines.append({"type": "step", "step": step, "epoch": epoch, "loss": 25 * inv + 25 * var + cov, "invariance": inv,
                          "variance": var, "covariance": cov, "lr": 0.3 * min(1.0, (step + 1) / 30)})
            step += 1
        lines.append({"type": "epoch", "epoch": epoch, "std_repr": 0.010 + 0.002 * epoch, "std_proj": 0.030 + 0.001 * epoch,
                      "corr_repr": 0.25 / (epoch + 1), "corr_proj": 0.12 / (epoch + 1)})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n" + '{"type": "step", "st')  # a run killed mid-write
    return path


def example_runs(tmp_path: Path) -> list[dict]:
    docs = [
        results("vicreg", {"imagenet_linear": linear(71.5, 90.2), "imagenet_knn": knn(63.8, 61.9, k10=63.1, k100=62.9),
                           "voc07_svm": svm(85.9), "voc07_det": det(81.7)}),
        results("barlow", {"imagenet_linear": linear(69.0, 88.7, name="linear_fast"), "imagenet_knn": knn(63.1, 61.0, k10=62.0, k100=61.8),
                           "voc07_svm": svm(84.2, "center_crop"), "voc07_det": det(72.4, "torchvision")}, protocol="fast",
                method="barlowtwins"),
        results("random", {"imagenet_linear": linear(4.1, 12.3), "imagenet_knn": knn(3.0, 3.9, k10=2.6, k100=3.5),
                           "voc07_svm": task_entry(status="skipped", reason="VOC2007 not found under /data", protocol_name="svm_vissl"),
                           "voc07_det": task_entry(status="failed", reason="CUDA out of memory", protocol_name="det_detectron2_c4")}),
    ]
    return load_runs([write(tmp_path / f"{i}.json", d) for i, d in enumerate(docs)])


def test_train_log_reader(tmp_path):
    log = read_train_log(train_log(tmp_path / "log.jsonl"))
    assert len(log.steps) == 90 and len(log.epochs) == 6 and log.bad_lines == 1 and log.proj_dim() == 512
    # records without a "type" are told apart by their fields
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"step": 0, "loss": 3.0, "invariance": 1.0}\n{"epoch": 0, "std_repr": 0.1, "corr_repr": 0.2}\n')
    log = read_train_log(plain)
    assert len(log.steps) == 1 and len(log.epochs) == 1 and log.proj_dim() is None
    # a resumed run appends and repeats steps after its last checkpoint: the last record of a step wins
    resumed = tmp_path / "resumed.jsonl"
    resumed.write_text("".join(json.dumps({"type": "step", "step": s, "loss": loss}) + "\n"
                               for s, loss in [(0, 9.0), (1, 8.0), (2, 7.0), (1, 7.5), (2, 6.5), (3, 6.0)]))
    log = read_train_log(resumed)
    assert [(r["step"], r["loss"]) for r in log.steps] == [(0, 9.0), (1, 7.5), (2, 6.5), (3, 6.0)]
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"type": "start", "args": {}}\n')
    with pytest.raises(UserError, match="no training records"):
        read_train_log(empty)


def test_report_renders_in_chromium(tmp_path, chromium):
    runs = example_runs(tmp_path)
    (tmp_path / "exp").mkdir()
    log = train_log(tmp_path / "exp" / "log.jsonl")
    html = build_report(runs, table=build_table(runs, published=True), train_logs=[log],
                        title="vicreg-bench report: example with hand-made results (tests/test_report_browser.py)")
    assert_offline(html)
    page = tmp_path / "report.html"
    page.write_text(html)
    n_img = html.count("<img ")
    assert n_img >= 7  # 4 task charts, k-NN vs k, VOC07 per class, 2 training charts

    dom = run_chromium(chromium, tmp_path / "profile-dom", page.as_uri(), "--virtual-time-budget=5000", "--dump-dom").stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-report-ready") == "yes", attrs
    assert attrs["data-images-total"] == attrs["data-images-ok"] == str(n_img)
    assert dom.count('<tr class="run"') == 3 and dom.count('<tr class="published"') >= 10
    assert "Fig. 4" in dom and "VOC07 linear SVMs (VISSL protocol): AP per class" in dom

    shot = tmp_path / "shot.png"
    run_chromium(chromium, tmp_path / "profile-shot", page.as_uri(), f"--screenshot={shot}", "--window-size=1280,2000")
    from PIL import Image, ImageStat

    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    stat = ImageStat.Stat(image.convert("L"))
    assert stat.stddev[0] > 20, f"screenshot looks blank (stddev {stat.stddev[0]:.1f})"
    colours = image.resize((320, 500)).getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # text, table shading and charts, not a flat page
    if os.environ.get("VICREG_BENCH_UPDATE_SCREENSHOT") == "1":
        small = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        small.save(DOCS_PNG, optimize=True)
        assert DOCS_PNG.stat().st_size < 300_000
