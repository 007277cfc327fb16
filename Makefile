# tkjepa — set-up, tests and demos. Every target that needs Python first makes sure `.venv` exists and
# holds the pinned install (CPU torch from constraints.txt); nothing has to be installed by hand.
#
#   make demo    the Gradio rollout viewer      make test    all tests + every notebook, executed
#   make lab     JupyterLab on notebooks/       make clean   caches (keeps .venv); distclean: also .venv
#   make quickstart  the text-and-HTML tour of the shipped episodes

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PY     ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTHON := $(BIN)/python
EXTRAS := notebooks,app,dev
# Re-install only when the declared dependencies or the pins change.
STAMP  := $(VENV)/.installed

# Every pip install goes through the constraints: an unpinned torch pulls several GB of CUDA wheels.
PIP_INSTALL := $(PYTHON) -m pip install -q --constraint constraints.txt

# Jupyter refuses to run as root (containers) unless told to.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

NOTEBOOKS      := $(sort $(wildcard notebooks/*.ipynb))
NBMAKE_TIMEOUT ?= 600
PYTEST_ARGS    ?=
# `make test` runs tests/ and, with --nbmake, executes each notebook as one more test.
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider

# The shipped sample episodes, bit for bit (data_samples/README.md lists every shipped file's command).
SAMPLES_EPISODES_CMD := $(BIN)/tkjepa generate --out data_samples/episodes --episodes 48 --seed 2026 --layout homes
SAMPLES_SCATTERED_CMD := $(BIN)/tkjepa generate --out data_samples/episodes_scattered --episodes 48 --seed 2026 --layout scattered
BENCH_ARGS ?=
DEMO_PORT  ?= 7860

# Silences jupyter_core's "migrating to platformdirs" warning in every kernel nbmake starts.
export JUPYTER_PLATFORM_DIRS := 1

.PHONY: help venv install test demo docs quickstart lab data-samples bench clean distclean

help:
	@echo "make demo          the rollout viewer on http://127.0.0.1:$(DEMO_PORT) (creates .venv on first use)"
	@echo "make quickstart    a two-minute text-and-HTML tour of the shipped episodes"
	@echo "make test          pytest tests/ and execute every notebooks/*.ipynb"
	@echo "make lab           JupyterLab in notebooks/ on http://127.0.0.1"
	@echo "make docs          execute every lesson and render it to docs/site/index.html"
	@echo "make venv          create $(VENV) and install the pinned dependencies"
	@echo "make data-samples  regenerate data_samples/"
	@echo "make bench         timing benchmark"
	@echo "make clean         remove caches (keeps $(VENV));  make distclean  also removes $(VENV)"

# ---- environment -------------------------------------------------------------------------------------
# pyvenv.cfg is order-only: its timestamp must not trigger re-installs.
$(VENV)/pyvenv.cfg:
	$(PY) -m venv $(VENV)

# After installing, refuse an environment that would break or bloat: torchvision (CUDA-only build here,
# breaks `import transformers`), CUDA packages (an unpinned torch slipped in) or a torch other than the pin.
define CHECK_ENV
import importlib.metadata as md, importlib.util, re, sys
problems = []
if importlib.util.find_spec("torchvision") is not None:
    problems.append("torchvision is installed; it breaks `import transformers`. Remove it: $(BIN)/pip uninstall -y torchvision")
cuda = sorted({d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-")})
if cuda:
    problems.append("CUDA packages are installed (a torch was installed without constraints.txt): " + ", ".join(cuda))
pin = re.search(r"^torch==(\S+)", open("constraints.txt").read(), re.M)
have = md.version("torch")
if pin is None or have.split("+")[0] != pin.group(1):
    problems.append(f"torch {have} is installed but constraints.txt pins {pin.group(1) if pin else 'nothing'}")
if problems:
    sys.exit("\n".join("ERROR: " + p for p in problems) + "\n(make distclean && make venv starts over.)")
print(f"environment ok: torch {have}, no torchvision, no CUDA packages")
endef
export CHECK_ENV

$(STAMP): pyproject.toml constraints.txt | $(VENV)/pyvenv.cfg
	@echo ">> installing tkjepa[$(EXTRAS)] into $(VENV) (pinned by constraints.txt)"
	$(PYTHON) -m pip install -q --upgrade pip
	$(PIP_INSTALL) -e ".[$(EXTRAS)]"
	@$(PYTHON) -c "$$CHECK_ENV"
	@touch $@

venv install: $(STAMP)

# ---- use ---------------------------------------------------------------------------------------------
test: $(STAMP)
	$(PYTEST) tests $(if $(NOTEBOOKS),--nbmake --nbmake-timeout=$(NBMAKE_TIMEOUT) $(NOTEBOOKS)) $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/tkjepa viewer --port $(DEMO_PORT)

docs: $(STAMP)
	$(PYTHON) docs/build_site.py --out docs/site

quickstart: $(STAMP)
	$(BIN)/tkjepa quickstart

lab: $(STAMP)
	cd notebooks && $(abspath $(BIN))/jupyter lab --ip 127.0.0.1 --no-browser $(LAB_ARGS)

data-samples: $(STAMP)
	rm -rf data_samples/episodes data_samples/episodes_scattered
	$(SAMPLES_EPISODES_CMD)
	$(SAMPLES_SCATTERED_CMD)

bench: $(STAMP)
	$(BIN)/tkjepa bench $(BENCH_ARGS)

# ---- cleaning ----------------------------------------------------------------------------------------
clean:
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
	  \( -name __pycache__ -o -name .ipynb_checkpoints -o -name .pytest_cache -o -name .hypothesis \) \
	  -type d -print0 | xargs -0 rm -rf
	rm -rf build dist *.egg-info tests/artifacts

distclean: clean
	rm -rf $(VENV)
