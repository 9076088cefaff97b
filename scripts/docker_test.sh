#!/usr/bin/env bash
# make docker-test: build docker/Dockerfile.cpu on a real Docker engine, run `vicreg-bench demo` in it as a
# non-root user with the output on a mounted volume, run the same demo outside the container, and compare
# every task's metrics (they must be equal). Prints the image size and the build time.
#
# Needs: a running Docker engine (dockerd) and a docker CLI that builds with BuildKit (buildx, or a CLI
# older than 23 with DOCKER_BUILDKIT=1); debootstrap when the base image must be made. Takes about 35
# minutes on 2 cores (build ~5, two demos ~12-15 each). Not run by .ci/run: too slow.
#
# Environment (all optional):
#   BASE_IMAGE      base image to build on. Default vicreg-bench-base:bookworm, made here with
#                   `debootstrap --variant=minbase bookworm` from the Debian mirror apt uses, when missing.
#   DEBIAN_MIRROR   the mirror for debootstrap (default: the first Debian URI in /etc/apt/sources.list*).
#   TORCH_SOURCE    `local` (default): `pip download` torch/torchvision with this machine's pip config into
#                   docker/wheels/ and install them from there, so the image runs the same torch build as
#                   the host demo; or a package index URL (e.g. https://download.pytorch.org/whl/cpu).
#   PIP_CA_BUNDLE   CA bundle pip needs (default: `pip config get global.cert`, or $PIP_CERT); passed as a
#                   BuildKit secret only, and checked to be absent from every layer of the image.
#   IMAGE           tag to build (default vicreg-bench:cpu).
#   OUT             work folder (default build/docker-test): demo_container/, demo_host/, logs.
#   HOST_DEMO       a finished host demo folder to compare with instead of running one (its
#                   demo_summary.json must exist).
#   SKIP_BUILD=1    use the existing $IMAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
IMAGE=${IMAGE:-vicreg-bench:cpu}
BASE_IMAGE=${BASE_IMAGE:-vicreg-bench-base:bookworm}
TORCH_SOURCE=${TORCH_SOURCE:-local}
OUT=${OUT:-build/docker-test}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
VENV_PY=${VENV_PY:-$ROOT/.venv/bin/python}
die() { echo "docker-test: $*" >&2; exit 1; }
say() { echo "=== docker-test: $* ($(date +%T))"; }

# ---------------------------------------------------------------- a docker CLI that builds with BuildKit
DOCKER=${DOCKER:-docker}
command -v "$DOCKER" >/dev/null || die "no docker CLI on PATH (apt-get install docker.io)"
"$DOCKER" info >/dev/null 2>&1 || die "the Docker engine does not answer ('$DOCKER info' fails): start dockerd (as root: dockerd >/var/log/dockerd.log 2>&1 &)"
if ! "$DOCKER" buildx version >/dev/null 2>&1; then
  major=$("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
  if [ "${major:-99}" -ge 23 ] 2>/dev/null; then
    # CLI 23+ builds with BuildKit only through buildx; Debian's docker.io ships an older CLI that has it built in
    for alt in /usr/bin/docker /bin/docker; do
      alt_major=$("$alt" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || continue
      if [ -n "$alt_major" ] && [ "$alt_major" -lt 23 ]; then DOCKER=$alt; break; fi
    done
    [ "$DOCKER" != docker ] || die "'docker' ($major.x) has no buildx plugin and no docker CLI older than 23 was found: install buildx (the Dockerfiles need BuildKit)"
  fi
  export DOCKER_BUILDKIT=1
fi
echo "docker CLI: $DOCKER ($("$DOCKER" version --format '{{.Client.Version}} / engine {{.Server.Version}}'))"

# ---------------------------------------------------------------- the base image
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ "$BASE_IMAGE" = vicreg-bench-base:bookworm ] || die "base image $BASE_IMAGE not found locally (docker pull it, or unset BASE_IMAGE to debootstrap one)"
  command -v debootstrap >/dev/null || die "base image $BASE_IMAGE missing and no debootstrap to make it (apt-get install debootstrap)"
  if [ -z "${DEBIAN_MIRROR:-}" ]; then
    DEBIAN_MIRROR=$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true) \
      | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
    [ -n "$DEBIAN_MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list*: set DEBIAN_MIRROR"
  fi
  say "debootstrap bookworm from $DEBIAN_MIRROR -> $BASE_IMAGE"
  rootfs=$(mktemp -d "$OUT/rootfs.XXXX")
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$OUT/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $OUT/debootstrap.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs/etc/resolv.conf"
  tar -C "$rootfs" -c . | "$DOCKER" import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

# ---------------------------------------------------------------- torch source and CA bundle
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH_SOURCE=$TORCH_SOURCE")
if [ "$TORCH_SOURCE" = local ] && ! ls docker/wheels/torch-2.14.1*.whl >/dev/null 2>&1; then
  [ -x "$VENV_PY" ] || die "TORCH_SOURCE=local needs a pip to download the wheels with: $VENV_PY is missing (make venv)"
  say "pip download torch/torchvision into docker/wheels/"
  "$VENV_PY" -m pip download -q -d docker/wheels -c docker/requirements.txt torch==2.14.1 torchvision==0.29.1
fi
CA=${PIP_CA_BUNDLE:-$( (pip config get global.cert 2>/dev/null || true) | tail -n1)}
CA=${CA:-${PIP_CERT:-}}
secret_args=()
if [ -n "$CA" ]; then
  [ -f "$CA" ] || die "CA bundle $CA (pip config global.cert / PIP_CA_BUNDLE) does not exist"
  secret_args=(--secret "id=pip_cert,src=$CA" --build-arg PIP_CERT=/run/secrets/pip_cert)
  echo "pip CA bundle: $CA (BuildKit secret)"
fi

# ---------------------------------------------------------------- build
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "build $IMAGE from docker/Dockerfile.cpu (log: $OUT/build.log)"
  t0=$(date +%s)
  "$DOCKER" build --progress=plain -f docker/Dockerfile.cpu -t "$IMAGE" "${build_args[@]}" "${secret_args[@]}" . \
    >"$OUT/build.log" 2>&1 || { tail -n 30 "$OUT/build.log"; die "the build failed, see $OUT/build.log"; }
  BUILD_S=$(( $(date +%s) - t0 ))
else
  BUILD_S=skipped
fi
SIZE_B=$("$DOCKER" image inspect "$IMAGE" --format '{{.Size}}')

# ---------------------------------------------------------------- the CA bundle is in no layer
if [ -n "$CA" ]; then
  say "check that no layer of $IMAGE holds the build's CA bundle"
  # the certificates of the bundle that pip's own (certifi) bundle lacks: what only the build machine trusts
  # (compared with the image's own pip bundle, so that public roots it ships legitimately are not flagged)
  "$DOCKER" run --rm --entrypoint python "$IMAGE" -c 'from pip._vendor import certifi; print(open(certifi.where()).read())' \
    >"$OUT/image_certifi.pem"
  python3 - "$CA" "$OUT/image_certifi.pem" >"$OUT/ca_lines.txt" <<'EOF'
import re, sys
def certs(path):
    return re.findall(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", open(path).read(), re.S)
known = set(certs(sys.argv[2]))
for body in certs(sys.argv[1]):
    if body not in known:
        lines = [l for l in body.splitlines() if len(l) == 64]
        print(lines[len(lines) // 2])  # one full base64 line from the middle of each extra certificate
EOF
  if [ -s "$OUT/ca_lines.txt" ]; then
    found=$("$DOCKER" save "$IMAGE" | grep -a -c -F -f "$OUT/ca_lines.txt" || true)
    [ "$found" = 0 ] || die "the image holds certificates of the build's CA bundle ($found matching lines in 'docker save $IMAGE')"
    echo "none of the $(wc -l <"$OUT/ca_lines.txt") certificates only the build's bundle has is in any layer"
  else
    echo "the build's bundle has no certificate beyond pip's own: nothing to look for"
  fi
  ! "$DOCKER" run --rm --entrypoint ls "$IMAGE" /run/secrets/pip_cert >/dev/null 2>&1 || die "/run/secrets/pip_cert is in the image"
fi

# ---------------------------------------------------------------- the demo in the container, as non-root
say "vicreg-bench demo in $IMAGE (log: $OUT/demo_container.log)"
rm -rf "$OUT/demo_container"
mkdir -p "$OUT/demo_container"
if [ "$(id -u)" = 0 ]; then
  user=4242:4242  # a uid with no passwd entry and no home, as `--user "$(id -u):$(id -g)"` gives most users
  chown "$user" "$OUT/demo_container"
else
  user="$(id -u):$(id -g)"
fi
t0=$(date +%s)
"$DOCKER" run --rm --user "$user" -v "$OUT/demo_container":/out "$IMAGE" demo --out /out \
  >"$OUT/demo_container.log" 2>&1 || { tail -n 30 "$OUT/demo_container.log"; die "the demo failed in the container"; }
CONTAINER_S=$(( $(date +%s) - t0 ))
[ "$(stat -c %u "$OUT/demo_container/demo_summary.json")" = "${user%%:*}" ] || die "the demo's files do not belong to uid ${user%%:*}"

# ---------------------------------------------------------------- the same demo outside
if [ -n "${HOST_DEMO:-}" ]; then
  HOST=$HOST_DEMO
  [ -f "$HOST/demo_summary.json" ] || die "HOST_DEMO=$HOST: no demo_summary.json (not a finished demo)"
  HOST_S=reused
else
  [ -x "$ROOT/.venv/bin/vicreg-bench" ] || die "no .venv/bin/vicreg-bench for the host demo (make venv)"
  say "vicreg-bench demo on the host (log: $OUT/demo_host.log)"
  HOST=$OUT/demo_host
  rm -rf "$HOST"
  t0=$(date +%s)
  "$ROOT/.venv/bin/vicreg-bench" demo --out "$HOST" >"$OUT/demo_host.log" 2>&1 \
    || { tail -n 30 "$OUT/demo_host.log"; die "the host demo failed"; }
  HOST_S=$(( $(date +%s) - t0 ))
fi

# ---------------------------------------------------------------- compare
say "compare every task's metrics"
set +e
python3 - "$HOST" "$OUT/demo_container" <<'EOF'
import json, sys
from pathlib import Path

host, cont = Path(sys.argv[1]), Path(sys.argv[2])
HEADLINE = {"imagenet_knn": "k20_top1", "voc07_svm": "mAP", "imagenet_linear": "top1", "places205_linear": "top1",
            "inat18_linear": "top1", "imagenet_semisup_1pct": "top1", "imagenet_semisup_10pct": "top1",
            "voc07_det": "AP50", "coco_det": "bbox_AP"}
def diffs(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from diffs(a.get(k), b.get(k), f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diffs(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b
bad = 0
for backbone in ("vicreg", "random_init"):
    h = json.loads((host / "runs" / backbone / "results.json").read_text())
    c = json.loads((cont / "runs" / backbone / "results.json").read_text())
    same_ckpt = h["checkpoint"]["sha256"] == c["checkpoint"]["sha256"]
    bad += not same_ckpt
    print(f"{backbone}: checkpoint sha256 {'equal' if same_ckpt else 'DIFFERENT'} ({c['checkpoint']['sha256'][:12]}); "
          f"torch host {h['environment']['torch']}, container {c['environment']['torch']}")
    for task in sorted(set(h["tasks"]) | set(c["tasks"])):
        ht, ct = h["tasks"].get(task, {}), c["tasks"].get(task, {})
        d = list(diffs({"status": ht.get("status"), "metrics": ht.get("metrics")},
                       {"status": ct.get("status"), "metrics": ct.get("metrics")}))
        bad += bool(d)
        m = HEADLINE.get(task)
        value = lambda t: t.get("metrics", {}).get(m)
        print(f"  {task:24s} {ht.get('status')}/{ct.get('status')}  {m} host {value(ht)} container {value(ct)}  "
              + ("equal (every metric)" if not d else f"DIFFERENT in {len(d)} values, e.g. {d[:3]}"))
print("RESULT:", "all metrics equal" if not bad else f"{bad} differences")
sys.exit(1 if bad else 0)
EOF
cmp_rc=$?
set -e
gb=$(python3 -c "print(f'{$SIZE_B/1e9:.2f}')")
echo "image $IMAGE: size $gb GB ($SIZE_B bytes); build time ${BUILD_S} s; demo in the container ${CONTAINER_S} s, on the host ${HOST_S} s"
exit $cmp_rc
