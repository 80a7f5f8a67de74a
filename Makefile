# reidlab: `make report` runs the default study, `make test` runs the suite.
# Both create .venv on first use and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine kind installs torch from local disk; GPU nodes keep their own CUDA torch
# (if torch already imports in the venv, e.g. made with VENV_FLAGS=--system-site-packages, nothing is installed).
# make report PROFILE=full: the ~2 h study whose claims table the README shows; PROFILE=gpu on a GPU node.
PROFILE ?= quick
# make report PROFILE=paper DATASETS=datasets.yaml [SET="seeds=[0,1] overrides.epochs=1"]: the papers' studies on
# the real benchmarks (README, "Reproducing the papers on your cluster").
DATASETS ?=
SET ?=
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
VENV_FLAGS ?=
STAMP := $(VENV)/.reidlab-installed
LOCK := requirements.lock
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install install-latest lock test report lab clean-reports

# The venv with torch in it (TORCH_SPEC, unless torch already imports); then, after the packages, the kernel.
define venv_with_torch
test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
endef
define jupyter_kernel
$(PY) -m ipykernel install --sys-prefix --name reidlab --display-name "Python (reidlab)" >/dev/null
endef

install: $(STAMP)

# Everything but torch comes from the lock, exactly (hashes checked, no resolution); a lock older than
# pyproject.toml's dependencies stops here with the command that renews it.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) scripts/lock.py check
	$(venv_with_torch)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	$(jupyter_kernel)
	sha256sum $(LOCK) > $(VENV)/reidlab-lock.sha256
	touch $(STAMP)

# The newest releases that pyproject.toml's ranges allow, instead of the lock's versions.
install-latest:
	$(venv_with_torch)
	$(PY) -m pip install -q --upgrade -e '.[dev]'
	$(jupyter_kernel)
	rm -f $(VENV)/reidlab-lock.sha256
	touch $(STAMP)

# Renew the lock from pyproject.toml (uv resolves it: about 3 s), keeping its versions where they still fit;
# `make lock UPGRADE=1` takes the newest releases instead. Commit both files.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
	TORCH_SPEC="$(TORCH_SPEC)" $(PY) scripts/lock.py compile --uv $(VENV)/bin/uv $(if $(UPGRADE),--upgrade)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q tests

report: $(STAMP)
	$(VENV)/bin/reidlab report --profile $(PROFILE) $(if $(DATASETS),--datasets $(DATASETS)) $(foreach s,$(SET),--set '$(s)')

# Containers often run as root, which Jupyter refuses without --allow-root.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_FLAGS)

clean-reports:
	find reports -mindepth 1 ! -name README.md -exec rm -rf {} +
