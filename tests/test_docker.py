"""Cheap checks of docker/: what a real build would only catch late, or not at all.

The real check is `make docker-test` (scripts/docker_test.sh): it builds docker/Dockerfile.cpu on a running
Docker engine (from a debootstrap base image when no registry is reachable), checks that the pip CA bundle
passed as a build secret is in no layer, runs `vicreg-bench demo` in the container as a non-root uid with
the output on a mounted volume, runs the same demo on the host and requires every task's metrics to be
equal. It takes about 35 minutes on 2 cores and needs dockerd, so `.ci/run` does not run it; run it after
changing anything under docker/ (docker/README.md has the measured figures). The CUDA image cannot be built
on the development machines (no registry for the CUDA base images, no nvcc); docker/README.md says how
far it gets.

What stays here: the pins against pyproject.toml and the Makefile (a build would happily install a version
outside the project's ranges), the detectron2 commit against the one the install hint names, the build
context (every path the Dockerfiles use is in the repository and let through by the .dockerignore files,
a failure the build only reports after minutes), no `# syntax=` line (it pulls the frontend from a registry),
the CA bundle only as a secret, and the non-root user.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
GPU, CPU = DOCKER / "Dockerfile", DOCKER / "Dockerfile.cpu"
# Added by the detectron2 half of issue 17; the CUDA image calls it to build detectron2.
D2_SCRIPT = "scripts/build_detectron2.sh"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comment lines dropped."""
    out, current = [], []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current.append(line[:-1].strip() if line.endswith("\\") else line)
        if not line.endswith("\\"):
            keyword, _, args = " ".join(current).partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = []
    return out


def arg_default(path: Path, name: str) -> str:
    values = [m.group(1).strip('"') for k, a in instructions(path) if k == "ARG" for m in [re.fullmatch(rf"{name}=(\S+)", a)] if m]
    assert values, f"{path.name}: no ARG {name}=..."
    return values[0]


def project_requirements() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, deps)}


def docker_requirements() -> dict[str, str]:
    pins = {}
    for line in (DOCKER / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"docker/requirements.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("path", [GPU, CPU], ids=["cuda", "cpu"])
def test_pins_are_the_projects(path):
    reqs = project_requirements()
    pins = docker_requirements()
    faiss = re.search(r"\b(faiss-(?:cpu|gpu))==(\S+)", path.read_text())
    assert faiss, f"{path.name} installs no pinned FAISS"
    pins["faiss-cpu"] = faiss.group(2)  # the GPU build stands for faiss-cpu: same library, same range
    makefile = re.search(r"^TORCH_PINS\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    for pin in makefile.group(1).split():
        name, version = pin.split("==")
        assert arg_default(path, f"{name.upper()}_VERSION") == version, f"{path.name}: {name} differs from the Makefile's {pin}"
        pins[name] = version
    for name, req in reqs.items():
        assert name in pins, f"dependency {name} of pyproject.toml is pinned in neither docker/requirements.txt nor {path.name}"
        assert req.specifier.contains(Version(pins[name])), f"{name}=={pins[name]} outside pyproject.toml's {req.specifier}"


def test_detectron2_commit_is_the_install_hints():
    from vicreg_bench.detection.d2_plugin import DETECTRON2_COMMIT

    commit = arg_default(GPU, "DETECTRON2_COMMIT")
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and commit == DETECTRON2_COMMIT
    assert commit in (DOCKER / "README.md").read_text()
    assert D2_SCRIPT in GPU.read_text() and "FORCE_CUDA=1" in GPU.read_text()


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches everything under a folder."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pat) or (pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pat[3:])):
                ignored = not negate
                break
    return ignored


@pytest.mark.parametrize("path", [GPU, CPU], ids=["cuda", "cpu"])
def test_build_context_has_what_the_dockerfile_uses(path):
    text = (DOCKER / f"{path.name}.dockerignore").read_text()
    patterns = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert patterns[0] == "*", "the context must start from nothing (.venv, datasets, runs stay out)"
    used = []
    for keyword, args in instructions(path):
        if keyword == "COPY" and not args.startswith("--from"):
            used += args.split()[:-1]
        used += re.findall(r"--mount=type=bind,source=([^,\s]+)", args)
    assert used
    for src in used:
        reincluded_below = any(p.startswith(f"!{src}/") for p in patterns)  # a folder some of whose files are sent
        assert not _ignored(patterns, src) or reincluded_below, f"{path.name}: {src} is used but {path.name}.dockerignore leaves it out"
        if src == D2_SCRIPT and not (ROOT / src).exists():
            continue  # the detectron2 half of issue 17 adds it
        assert (ROOT / src).exists(), f"{path.name}: {src} is not in the repository"
    assert _ignored(patterns, ".venv/bin/python") and _ignored(patterns, "demo_out/report.html")


@pytest.mark.parametrize("path", [GPU, CPU], ids=["cuda", "cpu"])
def test_no_registry_frontend_and_ca_bundle_only_as_secret(path):
    first = path.read_text().lstrip().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first), f"{path.name}: a syntax directive pulls the frontend from a registry"
    for keyword, args in instructions(path):
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem)\b", args), f"{path.name}: {keyword} {args}: a CA bundle in a layer"
        if keyword == "RUN" and "pip install" in args and "--no-deps" not in args:  # one that reaches an index
            assert "--mount=type=secret,id=pip_cert" in args, f"{path.name}: a pip install without the CA secret: {args[:80]}"
        if keyword == "ENV":
            assert "PIP_CERT" not in args, f"{path.name}: PIP_CERT in the image's environment"


@pytest.mark.parametrize("path", [GPU, CPU], ids=["cuda", "cpu"])
def test_runs_as_non_root_with_volumes(path):
    final = instructions(path)
    final = final[max(i for i, (k, _) in enumerate(final) if k == "FROM"):]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("ENTRYPOINT", '["vicreg-bench"]') in final
    assert ("VOLUME", '["/data", "/out"]') in final
    env = " ".join(a for k, a in final if k == "ENV")
    assert "VICREG_BENCH_DATA=/data" in env and "VICREG_BENCH_CACHE=/out/" in env


def test_readme_documents_build_and_run():
    readme = (DOCKER / "README.md").read_text()
    for dockerfile, tag in (("docker/Dockerfile", "vicreg-bench:cuda"), ("docker/Dockerfile.cpu", "vicreg-bench:cpu")):
        assert f"docker build -f {dockerfile} -t {tag}" in readme
        assert re.search(rf"docker run [^\n]*(\\\n[^\n]*)*{re.escape(tag)}", readme), f"no docker run line for {tag}"
    assert "make docker-test" in readme and "--user" in readme and "--gpus all" in readme
