"""Which datasets under the data root are found, missing or malformed, before any compute starts.

For each dataset it opens every split through the same readers the benchmarks use (lists and annotation
files are parsed, every listed image must exist; images are decoded only with --verify-images), then
says found / missing / malformed, the image count per split, what is wrong (file and line), and, for a
dataset that is not found, the exact layout expected (`vicreg-bench data check` prints it). What a task
reads comes from its registration (`TaskSpec.data`).

`vicreg-bench run` calls `preflight(tasks, data_root)` for the tasks it was asked to run, and fails
fast listing everything missing at once (or skips those tasks with --skip-missing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from vicreg_bench.data.errors import DatasetMissingError
from vicreg_bench.data.layouts import DATASETS, EXPECTED_LAYOUT, dataset_dir
from vicreg_bench.data.registry import open_classification, open_detection
from vicreg_bench.errors import UserError

STATES = ("found", "missing", "malformed")

# What each dataset's check opens: (kind, split, optional). Optional parts never make a dataset "missing".
DATASET_CHECKS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "imagenet": (("classification", "train", False), ("classification", "val", False),
                 ("classification", "train_1pct", True), ("classification", "train_10pct", True)),
    "places205": (("classification", "train", False), ("classification", "val", False)),
    "inat2018": (("classification", "train", False), ("classification", "val", False)),
    "voc2007": (("classification", "trainval", False), ("classification", "test", False),
                ("detection", "trainval", False), ("detection", "test", False)),
    "voc2012": (("detection", "trainval", False),),
    "coco": (("detection", "train2017", False), ("detection", "val2017", False)),
}  # fmt: skip

@dataclass
class DatasetStatus:
    name: str
    state: str  # "found" | "missing" | "malformed"
    counts: dict[str, int] = field(default_factory=dict)  # split -> number of images
    problems: list[str] = field(default_factory=list)  # one line each, naming the file (and line/entry)
    expected_layout: str = ""
    path: str = ""  # the dataset folder that was checked
    split_problems: dict[str, str] = field(default_factory=dict)  # "kind:split" -> why it cannot be opened

    @property
    def ok(self) -> bool:
        return self.state == "found"

    def to_dict(self) -> dict:
        return asdict(self)


def _open(kind: str, name: str, data_root: Path, split: str):
    opener = open_classification if kind == "classification" else open_detection
    return opener(name, data_root, split)


def undecodable_images(ds, workers: int = 4, progress: bool = False) -> list[str]:
    """Decode every image of a dataset (threads: PIL releases the GIL while decoding); the errors, one
    line each naming the file and the decoder's error."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from vicreg_bench.data.base import BadImageError, load_rgb

    def one(rel: str) -> str | None:
        try:
            load_rgb(ds.root / rel)
        except BadImageError as e:
            return str(e)
        return None

    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(one, [rel for rel, _ in ds.samples])
        it = tqdm(results, total=len(ds), desc=f"decoding {ds.name} {ds.split}", disable=not progress, leave=False)
        return [r for r in it if r]


def dataset_status(
    name: str,
    data_root,
    checks: Iterable[tuple[str, str, bool]] | None = None,
    *,
    verify_images: bool = False,
    progress: bool = False,
) -> DatasetStatus:
    """Open each (kind, split) of the dataset and sum up; never raises for a data problem.
    With `verify_images`, also decode every image (slow: a full pass over the data)."""
    if name not in DATASET_CHECKS:
        raise UserError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    data_root = Path(data_root)
    folder = dataset_dir(name, data_root)
    status = DatasetStatus(name, "found", expected_layout=EXPECTED_LAYOUT[name], path=str(folder))
    if not folder.is_dir():
        status.state = "missing"
        status.problems.append(f"{folder}: folder not found")
        return status
    missing = malformed = False
    decoded: set[str] = set()
    for kind, split, optional in DATASET_CHECKS[name] if checks is None else checks:
        key = f"{kind}:{split}"
        try:
            ds = _open(kind, name, data_root, split)
        except DatasetMissingError as e:
            status.split_problems[key] = str(e)
            if optional:
                status.problems.append(f"optional {split} not available: {e}")
            else:
                missing = True
                status.problems.append(str(e))
            continue
        except UserError as e:
            malformed = True
            status.split_problems[key] = str(e)
            status.problems.append(str(e))
            continue
        except (OSError, ValueError) as e:  # unreadable files and the like: report, do not crash the check
            malformed = True
            status.split_problems[key] = f"{folder}: {type(e).__name__}: {e}"
            status.problems.append(status.split_problems[key])
            continue
        status.counts[split] = len(ds)
        if verify_images and split not in decoded:  # VOC2007: the two kinds share the images
            bad = undecodable_images(ds, progress=progress)
            decoded.add(split)
            if bad:
                malformed = True
                status.split_problems[key] = f"{len(bad)} image(s) of {split} cannot be decoded, e.g. {bad[0]}"
                status.problems += bad
    status.problems = list(dict.fromkeys(status.problems))  # the same missing file can block several splits
    status.state = "malformed" if malformed else "missing" if missing else "found"
    return status


def task_data() -> dict[str, dict[str, tuple[tuple[str, str], ...]]]:
    """task -> {dataset: ((reader kind, split), ...)}: what each registered task reads (its registration)."""
    from vicreg_bench.tasks.catalog import all_tasks

    return {name: dict(spec.data) for name, spec in all_tasks().items()}


def datasets_needed(names: Iterable[str]) -> dict[str, list[tuple[str, str, bool]]]:
    """Task or dataset names -> {dataset: checks}; a task needs only its own splits, a dataset all of them."""
    tasks = task_data()
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for n in names:
        if n in tasks:
            for ds, reqs in tasks[n].items():
                for kind, split in reqs:
                    if (kind, split, False) not in out.setdefault(ds, []):
                        out[ds].append((kind, split, False))
        elif n in DATASET_CHECKS:
            for chk in DATASET_CHECKS[n]:
                if chk not in out.setdefault(n, []):
                    out[n].append(chk)
        else:
            raise UserError(
                f"unknown dataset or task {n!r}; datasets: {', '.join(DATASETS)}; tasks: {', '.join(tasks)}"
            )
    return out


def preflight(names: Iterable[str], data_root) -> list[DatasetStatus]:
    """Statuses of the datasets that the given task (or dataset) names need, one per dataset, in order."""
    return [dataset_status(ds, data_root, checks) for ds, checks in datasets_needed(list(names)).items()]


def task_problems(task: str, statuses: Iterable[DatasetStatus]) -> list[str]:
    """Why `task` cannot run with these preflight statuses (empty list: it can)."""
    by_name = {s.name: s for s in statuses}
    problems = []
    for ds, reqs in task_data()[task].items():
        st = by_name.get(ds)
        if st is None:
            problems.append(f"{ds}: not checked")
            continue
        if st.state == "missing" and not st.split_problems:
            problems.append(st.problems[0] if st.problems else f"{ds}: missing")
        for kind, split in reqs:
            msg = st.split_problems.get(f"{kind}:{split}")
            if msg and msg not in problems:
                problems.append(msg)
    return problems


def require_tasks_data(tasks: Iterable[str], data_root) -> list[DatasetStatus]:
    """Preflight for `run` without --skip-missing: a UserError listing every problem of every task at once."""
    tasks = list(tasks)
    statuses = preflight(tasks, data_root)
    lines = [f"{t}: {p}" for t in tasks for p in task_problems(t, statuses)]
    if lines:
        raise UserError(
            f"data missing or malformed for {len({ln.split(':')[0] for ln in lines})} task(s) "
            f"(see `vicreg-bench data check`; or pass --skip-missing): " + "; ".join(lines)
        )
    return statuses


def format_report(statuses: list[DatasetStatus], data_root: Path) -> str:
    out = [f"data root: {data_root}", ""]
    for st in statuses:
        counts = ", ".join(f"{k} {v}" for k, v in st.counts.items()) or "-"
        out.append(f"{st.name:<10} {st.state:<10} {counts}")
        for p in st.problems:
            out.append(f"{'':<10} ! {p}")
        if st.state != "found":
            out.append(f"{'':<10} expected layout under the data root:")
            out += [f"{'':<12}{ln}" for ln in st.expected_layout.splitlines()]
        out.append("")
    found = sum(s.ok for s in statuses)
    out.append(f"{found} of {len(statuses)} datasets found")
    return "\n".join(out)
