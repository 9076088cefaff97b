#!/usr/bin/env bash
# Build detectron2 from a source checkout into the active virtualenv (the supported way to get the
# detectron2 engine on current torch: detectron2 has no wheels for it).
#
#   source .venv/bin/activate && scripts/build_detectron2.sh SRC [--force]
#
# SRC is a detectron2 source tree (a git clone, or `git archive` of one). The script checks that torch and
# torchvision are a matched pair (a mismatch breaks torchvision ops such as nms, which detectron2 calls),
# compiles detectron2's C++ (and CUDA when nvcc and a GPU build of torch are there) with
# `pip install --no-build-isolation --no-deps` against the installed torch, installs its runtime
# dependencies with the pins detectron2's setup.py asks for, and checks `import detectron2._C` and
# `get_cfg()`. Run again with the same SRC, it only re-checks (a stamp in the venv records what was built);
# --force rebuilds. Environment: MAX_JOBS (default 2); FORCE_CUDA (default: 1 when nvcc, a CUDA torch and a GPU
# or TORCH_CUDA_ARCH_LIST are there, else 0: the CPU-only build).
set -euo pipefail

die() { echo "build_detectron2.sh: error: $*" >&2; exit 2; }
say() { echo "build_detectron2.sh: $*"; }

SRC="${1:-}"
FORCE="${2:-}"
[ -n "$SRC" ] || die "usage: scripts/build_detectron2.sh SRC [--force]  (SRC: a detectron2 source tree)"
[ -z "$FORCE" ] || [ "$FORCE" = "--force" ] || die "unknown argument '$FORCE' (expected --force)"
[ -d "$SRC" ] || die "SRC '$SRC': no such directory (expected a detectron2 source tree)"
SRC="$(cd "$SRC" && pwd)"
[ -f "$SRC/setup.py" ] && [ -d "$SRC/detectron2/layers/csrc" ] \
    || die "SRC '$SRC': not a detectron2 source tree (expected setup.py and detectron2/layers/csrc/)"
[ -n "${VIRTUAL_ENV:-}" ] || die "no virtualenv is active; run 'source .venv/bin/activate' first (detectron2 is installed into it)"
PY="$VIRTUAL_ENV/bin/python"
[ -x "$PY" ] || die "VIRTUAL_ENV=$VIRTUAL_ENV has no bin/python"

# torch and torchvision: present and a matched pair (torch 2.N <-> torchvision 0.(N+15)), and nms runs
"$PY" - <<'EOF' || exit 2
import sys
try:
    import torch
    import torchvision
except ImportError as e:
    sys.exit(f"build_detectron2.sh: error: {e}; install a matched pair first, e.g. pip install torch==2.14.1 torchvision==0.29.1")
t = [int(x) for x in torch.__version__.split("+")[0].split(".")[:2]]
v = [int(x) for x in torchvision.__version__.split("+")[0].split(".")[:2]]
expected = t[1] + 15 if t[0] == 2 else None
try:
    from torchvision.ops import nms
    nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)
    ops_ok = True
except Exception as e:  # a mismatched pair fails here ("operator torchvision::nms does not exist")
    ops_ok, err = False, e
if (expected is not None and v != [0, expected]) or not ops_ok:
    why = "" if ops_ok else f"; torchvision.ops.nms fails: {err}"
    sys.exit(f"build_detectron2.sh: error: torch {torch.__version__} and torchvision {torchvision.__version__} "
             f"are not a matched pair (torch 2.{t[1]} goes with torchvision 0.{expected}){why}")
print(f"build_detectron2.sh: torch {torch.__version__}, torchvision {torchvision.__version__}")
EOF

# CUDA kernels need nvcc, a CUDA build of torch, and the GPU architectures to compile for: from a visible GPU,
# or TORCH_CUDA_ARCH_LIST (e.g. "8.0;9.0" in a GPU-less Docker build). Else the CPU-only build.
CUDA_ARCHS="$("$PY" -c 'import torch; print(torch.cuda.is_available() or "")')${TORCH_CUDA_ARCH_LIST:-}"
if [ -z "${FORCE_CUDA:-}" ]; then
    if command -v nvcc >/dev/null && "$PY" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' && [ -n "$CUDA_ARCHS" ]; then
        FORCE_CUDA=1
    else
        FORCE_CUDA=0
    fi
fi
[ "$FORCE_CUDA" != 1 ] || [ -n "$CUDA_ARCHS" ] \
    || die "FORCE_CUDA=1 but no GPU is visible and TORCH_CUDA_ARCH_LIST is unset: set it to the architectures to build (e.g. '8.0;9.0'), or FORCE_CUDA=0"

# runtime dependencies (detectron2's install_requires; installed by hand because of --no-deps)
say "installing runtime dependencies"
"$PY" -m pip install -q Pillow matplotlib 'pycocotools>=2.0.2' termcolor yacs tabulate cloudpickle tqdm tensorboard \
    'fvcore>=0.1.5,<0.1.6' 'iopath>=0.1.7,<0.1.10' 'omegaconf>=2.1,<2.4' hydra-core black packaging

# what would be built: the source's content hash, and the torch it compiles against
SRC_HASH="$(cd "$SRC" && find setup.py detectron2 -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.cu' -o -name '*.h' \) \
    -not -path '*/build/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
TORCH_V="$("$PY" -c 'import torch; print(torch.__version__)')"
STAMP="$VIRTUAL_ENV/.detectron2-build"
WANT="src=$SRC sha=$SRC_HASH torch=$TORCH_V"

check() {
    "$PY" - <<'EOF'
import detectron2, detectron2._C  # noqa: F401  (the compiled ops)
from detectron2.config import get_cfg
cfg = get_cfg()
print(f"build_detectron2.sh: ok: detectron2 {detectron2.__version__} from {detectron2.__file__}; "
      f"detectron2._C loads; get_cfg() has {len(cfg.keys())} sections")
EOF
}

if [ "$FORCE" != "--force" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && check 2>/dev/null; then
    say "already built from this source against torch $TORCH_V (pass --force to rebuild)"
    exit 0
fi

export FORCE_CUDA MAX_JOBS="${MAX_JOBS:-2}"
say "building $SRC (FORCE_CUDA=$FORCE_CUDA MAX_JOBS=$MAX_JOBS); 3-10 minutes on 2 cores"
start=$(date +%s)
(cd "$SRC" && "$PY" -m pip install --no-build-isolation --no-deps .) || die "pip could not build $SRC (see above)"
say "built in $(( $(date +%s) - start )) s"
check || die "detectron2 was installed but does not import (see above)"
echo "$WANT" > "$STAMP"
