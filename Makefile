# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each builds .venv if it is missing. torch/torchvision are the versions the development machines install.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-detectron2 docker-test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vicreg-bench demo --out demo_out

test: $(STAMP)
	$(PY) tools/house_check.py
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The tests marked `detectron2` against a real detectron2, built into $(VENV) from DETECTRON2_SRC when missing
# (a clone of https://github.com/facebookresearch/detectron2; scripts/build_detectron2.sh, a few minutes).
test-detectron2: $(STAMP)
	@$(PY) -c "import detectron2._C" 2>/dev/null || { \
	  test -n "$(DETECTRON2_SRC)" || { echo "make test-detectron2: detectron2 is not installed in $(VENV); set DETECTRON2_SRC to a detectron2 source tree (git clone https://github.com/facebookresearch/detectron2) to build it" >&2; exit 2; }; \
	  VIRTUAL_ENV="$(abspath $(VENV))" scripts/build_detectron2.sh "$(DETECTRON2_SRC)"; }
	$(PY) -m pytest -q -m detectron2

# Builds docker/Dockerfile.cpu on a running Docker engine, runs the demo in it and on the host, compares the
# metrics, prints the image size and build time (~35 min on 2 cores; not part of `make test`).
docker-test: $(STAMP)
	bash scripts/docker_test.sh

clean:
	rm -rf demo_out .pytest_cache build *.egg-info
