"""Check the house rules of the source tree, report the figures, and fail when one is broken.

    python tools/house_check.py [--root DIR] [--max-lines 450] [--json]

Rules (docs/architecture.md says why):
1. no import cycles between modules of `vicreg_bench` and `trainers`, counting every import statement,
   function-level ones included;
2. no module over `--max-lines` lines;
3. a task name is spelt only by the module that registers the task (and the registry itself): every other
   module, and the package data (the results schema), reads the registry;
4. `vicreg_bench` never imports `trainers` (the demo runs the trainer through its console script).

Imports are read with `ast`, without running anything; the task names come from the task registry of the
tree checked (`--task-names a,b` gives them instead, e.g. to check an older tree). Exit status 0 when every
rule holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("vicreg_bench", "trainers")
REGISTRY_MODULE = "vicreg_bench.tasks.registry"


@dataclass
class Report:
    modules: int = 0
    cycles: list[list[str]] = field(default_factory=list)
    long_modules: dict[str, int] = field(default_factory=dict)
    task_spellers: dict[str, list[str]] = field(default_factory=dict)  # task -> modules that spell it
    task_owner: dict[str, str] = field(default_factory=dict)  # task -> the module that registers it
    trainer_imports: list[str] = field(default_factory=list)  # "vicreg_bench.x -> trainers.y"

    def stray_spellers(self) -> dict[str, list[str]]:
        allowed = lambda t: {self.task_owner.get(t), REGISTRY_MODULE}  # noqa: E731
        return {t: [m for m in ms if m not in allowed(t)] for t, ms in self.task_spellers.items()
                if any(m not in allowed(t) for m in ms)}

    @property
    def ok(self) -> bool:
        return not (self.cycles or self.long_modules or self.stray_spellers() or self.trainer_imports)


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages under `root`."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the tree that `name` imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import thing` imports mod
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import a.b.c` of a non-module attribute: its closest module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def registered_tasks(root: Path) -> dict[str, str]:
    """task name -> the module that registers it, asked of the tree's own registry in a fresh interpreter."""
    code = ("import json; from vicreg_bench.tasks.catalog import all_tasks; "
            "print(json.dumps({n: s.run.__module__ for n, s in all_tasks().items()}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        raise SystemExit(f"house_check: cannot read the task registry of {root}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check(root: Path, max_lines: int, task_names: list[str] | None = None) -> Report:
    modules = module_files(root)
    report = Report(modules=len(modules))
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    report.cycles = cycles(graph)
    for name, path in modules.items():
        n = len(path.read_text().splitlines())
        if n > max_lines:
            report.long_modules[name] = n
    report.trainer_imports = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith("vicreg_bench")
                                    for b in targets if b.split(".")[0] == "trainers")
    report.task_owner = registered_tasks(root) if task_names is None else {t: "" for t in task_names}
    texts = {name: path.read_text() for name, path in modules.items()}
    for pkg in PACKAGES:  # package data (the results schema, configs) must not spell task names either
        for path in sorted((root / pkg).rglob("*")):
            if path.suffix in (".json", ".yaml", ".yml"):
                texts[str(path.relative_to(root))] = path.read_text()
    for task in report.task_owner:
        word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(task)}(?![A-Za-z0-9_])")
        report.task_spellers[task] = sorted(m for m, text in texts.items() if word.search(text))
    return report


def render(report: Report, max_lines: int) -> str:
    lines = [f"house check of {report.modules} modules"]
    lines.append(f"  import cycles: {len(report.cycles)}")
    lines += [f"    {' <-> '.join(c)}" for c in report.cycles]
    lines.append(f"  modules over {max_lines} lines: {len(report.long_modules)}")
    lines += [f"    {m}: {n}" for m, n in sorted(report.long_modules.items(), key=lambda p: -p[1])]
    lines.append("  task names and the modules that spell them (allowed: the registering module and the registry):")
    stray = report.stray_spellers()
    for task, mods in report.task_spellers.items():
        flag = "  <- too many" if task in stray else ""
        lines.append(f"    {task}: {len(mods)} ({', '.join(mods)}){flag}")
    lines.append(f"  imports of trainers from vicreg_bench: {len(report.trainer_imports)}")
    lines += [f"    {t}" for t in report.trainer_imports]
    lines.append("OK" if report.ok else "FAILED: see above")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="source tree to check")
    p.add_argument("--max-lines", type=int, default=450)
    p.add_argument("--task-names", default=None, help="comma-separated task names instead of the tree's registry")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    names = [t for t in args.task_names.split(",") if t] if args.task_names else None
    report = check(args.root.resolve(), args.max_lines, names)
    if args.json:
        print(json.dumps({"modules": report.modules, "cycles": report.cycles, "long_modules": report.long_modules,
                          "task_spellers": report.task_spellers, "stray_spellers": report.stray_spellers(),
                          "trainer_imports": report.trainer_imports, "ok": report.ok}, indent=2))
    else:
        print(render(report, args.max_lines))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
