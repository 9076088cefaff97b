"""docker/Dockerfile and docker/Dockerfile.cpu, checked without a Docker engine.

A small parser reads the instructions (comments, line continuations, ARG/ENV substitution, stages), then
the tests check what the images promise: base images pinned by exact tag (or digest), torch/torchvision
equal to the project's pins, every pinned package inside pyproject.toml's ranges and every dependency
pinned, one CUDA version for torch, FAISS and the detectron2 build, detectron2 from a 40-hex commit built
with --no-build-isolation, dependencies installed before the source (layer caching), a non-root user,
`vicreg-bench` as entrypoint, /data and /out volumes, and docker/README.md's build and run lines.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
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
# faiss-gpu 1.15.1 on PyPI (Meta's wheels) is built for CUDA 12: its metadata says
# "Environment :: GPU :: NVIDIA CUDA :: 12" and requires nvidia-cuda-runtime-cu12>=12.6,<13.
FAISS_GPU_CUDA_MAJOR = 12


# ------------------------------------------------------------------------------------------- the parser


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the text after the keyword, continuation lines joined
    line: int  # 1-based line where it starts


@dataclass
class Stage:
    image: str  # after ARG substitution
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # ARG / ENV values in scope at the end


def parse_instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with backslash continuations joined and comment lines dropped
    (also inside a continued instruction, as Docker does). Parser directives are comments too."""
    out: list[Instruction] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and (stripped.startswith("#") or not stripped):
            continue  # comment or blank line inside a continued instruction
        if not current:
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        joined = " ".join(part for part in current if part)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        current = []
    assert not current, "the file ends inside a continued instruction"
    return out


_VAR = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


def substitute(text: str, variables: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        if name in variables and variables[name] != "":
            return variables[name]
        return m.group(2) if m.group(2) is not None else m.group(0)

    return _VAR.sub(repl, text)


def _assignments(args: str) -> dict[str, str]:
    """`A=1 B="x y"` or the legacy `A 1` form."""
    parts = shlex.split(args)
    if len(parts) >= 2 and "=" not in parts[0]:
        return {parts[0]: " ".join(parts[1:])}
    out = {}
    for part in parts:
        key, _, value = part.partition("=")
        out[key] = value
    return out


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages). Variables follow Docker's scoping: global ARGs reach FROM lines,
    and a stage sees a global ARG only after redeclaring it."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in parse_instructions(path.read_text()):
        if ins.keyword == "FROM":
            words = substitute(ins.args, global_args).split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
            continue
        if not stages:
            assert ins.keyword == "ARG", f"{path.name}:{ins.line}: only ARG may come before FROM"
            for key, value in _assignments(ins.args).items():
                global_args[key] = value
            continue
        stage = stages[-1]
        if ins.keyword == "ARG":  # `ARG NAME` redeclares a global ARG with its default
            for key, value in _assignments(ins.args).items():
                stage.variables[key] = value or global_args.get(key, "")
        elif ins.keyword == "ENV":
            for key, value in _assignments(ins.args).items():
                stage.variables[key] = substitute(value, stage.variables)
        stage.instructions.append(Instruction(ins.keyword, substitute(ins.args, stage.variables), ins.line))
    return global_args, stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def pip_pins(stage: Stage) -> dict[str, str]:
    """name -> version of every `name==version` in the stage's `pip install` / `pip wheel` commands."""
    pins: dict[str, str] = {}
    for ins in stage.instructions:
        if ins.keyword != "RUN":
            continue
        for command in re.split(r"&&|;", ins.args):
            words = command.split()
            if "pip" not in words or not ({"install", "wheel"} & set(words)):
                continue
            for word in words:
                match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\"']+)", word)
                if match:
                    pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


# ------------------------------------------------------------------------------------------- the project


def project_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in data["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def torch_pins() -> dict[str, str]:
    """torch / torchvision versions the project installs (Makefile TORCH_PINS)."""
    match = re.search(r"^TORCH_PINS\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile has no TORCH_PINS"
    return dict(pin.split("==") for pin in match.group(1).split())


@pytest.fixture(scope="module", params=["gpu", "cpu"])
def image(request):
    path = GPU if request.param == "gpu" else CPU
    global_args, stages = parse_dockerfile(path)
    return request.param, path, global_args, stages


def final(stages: list[Stage]) -> Stage:
    return stages[-1]


# ------------------------------------------------------------------------------------------- tests


def test_parser_handles_continuations_comments_and_args(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text(
        "# syntax=docker/dockerfile:1\nARG BASE=debian:12.5\nARG V=1.0\nFROM ${BASE} AS b\nARG V\n"
        "ENV A=x \\\n    B=\"y z\"\nRUN echo $A \\\n# a comment inside\n  && pip install foo==${V} \\\n   bar==2\n"
        "FROM b\nUSER 1000\n"
    )
    global_args, stages = parse_dockerfile(f)
    assert global_args == {"BASE": "debian:12.5", "V": "1.0"}
    assert [(s.image, s.name) for s in stages] == [("debian:12.5", "b"), ("b", None)]
    run = stages[0].instructions[-1]
    assert run.keyword == "RUN" and run.args == "echo x && pip install foo==1.0 bar==2" and run.line == 8
    assert stages[0].variables["B"] == "y z"
    assert pip_pins(stages[0]) == {"foo": "1.0", "bar": "2"}


def test_base_images_are_pinned(image):
    kind, path, _, stages = image
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.image in names:
            continue
        ref, _, digest = stage.image.partition("@")
        repo, _, tag = ref.rpartition(":")
        assert repo and tag and tag != "latest", f"{path.name}: {stage.image} is not pinned by tag"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{path.name}: {stage.image}: tag is not an exact version"
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), stage.image
    if kind == "cpu":
        assert not any("cuda" in s.image or "nvidia" in s.image for s in stages)


def test_torch_and_torchvision_are_the_projects_pins(image):
    kind, path, _, stages = image
    wanted = torch_pins()
    reqs = project_requirements()
    for stage in stages:
        pins = pip_pins(stage)
        if "torch" not in pins:
            continue
        for name in ("torch", "torchvision"):
            version = Version(pins[name])
            assert version.public == wanted[name], f"{path.name}: {name}=={pins[name]}, Makefile pins {wanted[name]}"
            assert reqs[name].specifier.contains(version.public), f"{name} {version} outside pyproject {reqs[name].specifier}"
            assert version.local == ("cpu" if kind == "cpu" else stage.variables["TORCH_CUDA"])
    assert "torch" in pip_pins(final(stages))


def test_every_dependency_is_pinned_inside_pyproject_ranges(image):
    kind, path, _, stages = image
    reqs = project_requirements()
    pins = pip_pins(final(stages))
    for stage in stages[:-1]:  # what the builder compiles counts too (liblinear-official)
        pins = {**pip_pins(stage), **pins}
    if kind == "gpu":
        # the GPU build of FAISS stands for faiss-cpu: the same library, the same version range
        assert "faiss-cpu" not in pins
        pins["faiss-cpu"] = pins.pop("faiss-gpu")
    for name, req in reqs.items():
        assert name in pins, f"{path.name}: dependency {name} is not pinned"
        assert req.specifier.contains(Version(pins[name]).public), f"{path.name}: {name}=={pins[name]} outside {req.specifier}"


def test_both_images_pin_the_same_versions():
    gpu = {**pip_pins(parse_dockerfile(GPU)[1][0]), **pip_pins(final(parse_dockerfile(GPU)[1]))}
    cpu = {**pip_pins(parse_dockerfile(CPU)[1][0]), **pip_pins(final(parse_dockerfile(CPU)[1]))}
    common = set(gpu) & set(cpu)
    assert {"numpy", "scikit-learn", "liblinear-official", "pycocotools", "pip"} <= common
    for name in common:
        assert Version(gpu[name]).public == Version(cpu[name]).public, f"{name}: {gpu[name]} vs {cpu[name]}"


def test_one_cuda_version_for_torch_faiss_and_detectron2():
    global_args, stages = parse_dockerfile(GPU)
    builder, runtime = stages[0], final(stages)
    assert builder.name == "builder" and "-devel-" in builder.image and "-devel-" not in runtime.image
    cuda = {re.search(r"cuda:(\d+)\.(\d+)\.\d+-", s.image).groups() for s in (builder, runtime)}
    assert len(cuda) == 1, "builder and runtime images have different CUDA versions"
    major, minor = cuda.pop()
    assert global_args["TORCH_CUDA"] == f"cu{major}{minor}"
    assert int(major) == FAISS_GPU_CUDA_MAJOR and "faiss-gpu" in pip_pins(runtime)
    assert Version(pip_pins(runtime)["faiss-gpu"]) >= Version("1.15")
    # the image checks torch's CUDA at build time
    assert any(f"startswith('{major}.{minor}')" in i.args for i in runtime.instructions if i.keyword == "RUN")


def test_detectron2_is_built_from_a_pinned_commit():
    _, stages = parse_dockerfile(GPU)
    builder = stages[0]
    commit = builder.variables["DETECTRON2_COMMIT"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    from vicreg_bench.detection.d2_plugin import DETECTRON2_COMMIT

    assert commit == DETECTRON2_COMMIT, "the image must build the commit the install hint names"
    runs = [i.args for i in builder.instructions if i.keyword == "RUN"]
    assert any("github.com/facebookresearch/detectron2" in r and f"checkout --detach {commit}" in r for r in runs)
    build = next(r for r in runs if "pip wheel" in r and "/src/detectron2" in r)
    assert "--no-build-isolation" in build and "FORCE_CUDA=1" in build
    # torch is installed in the builder before detectron2 is compiled against it
    assert runs.index(next(r for r in runs if "torch==" in r)) < runs.index(build)
    copies = [i.args for i in final(stages).instructions if i.keyword == "COPY"]
    assert any(c.startswith("--from=builder /wheels/detectron2-") for c in copies)


def test_cpu_image_has_no_cuda_or_detectron2():
    instructions = " ".join(i.args for i in parse_instructions(CPU.read_text()))  # comments left out
    _, stages = parse_dockerfile(CPU)
    pins = pip_pins(final(stages))
    assert "faiss-cpu" in pins and "faiss-gpu" not in pins
    assert "detectron2" not in instructions and "nvidia" not in instructions
    assert "--index-url https://download.pytorch.org/whl/cpu" in instructions


def test_dependencies_come_before_the_source(image):
    _, path, _, stages = image
    ins = final(stages).instructions
    source_copy = next(n for n, i in enumerate(ins) if i.keyword == "COPY" and i.args.split()[0] == "vicreg_bench")
    def installs_project(args: str) -> bool:
        return "pip install" in args and "." in args.split("&&")[0].split()

    dep_installs = [n for n, i in enumerate(ins) if i.keyword == "RUN" and "pip install" in i.args and not installs_project(i.args)]
    assert dep_installs and max(dep_installs) < source_copy, f"{path.name}: a dependency is installed after the source is copied"
    project_install = next(i for i in ins[source_copy:] if i.keyword == "RUN" and installs_project(i.args))
    assert "--no-deps" in project_install.args  # the source layer never changes the pinned dependencies
    for i in ins:
        if i.keyword == "COPY" and not i.args.startswith("--from"):
            for src in i.args.split()[:-1]:
                assert (ROOT / src).exists(), f"{path.name}: COPY {src}: no such path in the repository"
    # BuildKit's per-Dockerfile ignore file: exclude everything (.venv, datasets, runs), then re-include
    text = (DOCKER / f"{path.name}.dockerignore").read_text()
    patterns = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert patterns[0] == "*"
    for src in ("pyproject.toml", "README.md", "vicreg_bench", "trainers", "configs"):
        assert f"!{src}" in patterns, f"{path.name}.dockerignore leaves out {src}"


def test_runs_as_non_root_with_vicreg_bench_entrypoint_and_volumes(image):
    _, path, _, stages = image
    ins = final(stages).instructions
    users = [i.args for i in ins if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{path.name}: the image runs as root"
    entry = [i for i in ins if i.keyword == "ENTRYPOINT"][-1]
    assert exec_form(entry.args) == ["vicreg-bench"]
    volumes = [v for i in ins if i.keyword == "VOLUME" for v in exec_form(i.args)]
    assert {"/data", "/out"} <= set(volumes)
    env = final(stages).variables
    assert env["VICREG_BENCH_DATA"] == "/data"
    assert env["VICREG_BENCH_CACHE"].startswith("/out/")  # the feature cache persists in the output volume


def test_readme_documents_build_and_run():
    readme = (DOCKER / "README.md").read_text()
    assert "docker build -f docker/Dockerfile -t vicreg-bench:cuda ." in readme
    assert "docker build -f docker/Dockerfile.cpu -t vicreg-bench:cpu ." in readme
    joined = [line.strip() for line in re.sub(r"\\\n\s*", " ", readme).splitlines() if line.strip().startswith("docker run")]
    for tag in ("vicreg-bench:cuda", "vicreg-bench:cpu"):
        lines = [r for r in joined if tag in r]
        assert lines, f"no docker run line for {tag}"
        assert any(re.search(r"-v \S+:/data(:ro)?\b", r) for r in lines) and any(re.search(r"-v \S+:/out\b", r) for r in lines)
    assert any("--gpus all" in r for r in joined if "vicreg-bench:cuda" in r)
    assert any("--user" in r for r in joined)
    _, stages = parse_dockerfile(GPU)
    assert stages[0].variables["DETECTRON2_COMMIT"] in readme
