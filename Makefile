# reidlab: `make report` runs the default study, `make test` runs the suite.
# Both create .venv on first use and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine kind installs torch from local disk; GPU nodes keep their own CUDA torch
# (if torch already imports in the venv, e.g. made with VENV_FLAGS=--system-site-packages, nothing is installed).
# make report PROFILE=full: the ~2 h study whose claims table the README shows; PROFILE=gpu on a GPU node.
PROFILE ?= quick
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
VENV_FLAGS ?=
STAMP := $(VENV)/.reidlab-installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install test report lab clean-reports

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name reidlab --display-name "Python (reidlab)" >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q tests

report: $(STAMP)
	$(VENV)/bin/reidlab report --profile $(PROFILE)

# Containers often run as root, which Jupyter refuses without --allow-root.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_FLAGS)

clean-reports:
	find reports -mindepth 1 ! -name README.md -exec rm -rf {} +
