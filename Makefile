# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each builds .venv if it is missing. torch/torchvision are the versions the development machines install.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv clean docker-test

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
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Builds docker/Dockerfile.cpu on a running Docker engine, runs the demo in it and on the host, compares the
# metrics, prints the image size and build time (~35 min on 2 cores; not part of `make test`).
docker-test: $(STAMP)
	bash scripts/docker_test.sh

clean:
	rm -rf demo_out .pytest_cache build *.egg-info
