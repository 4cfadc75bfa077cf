# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
RUN     ?= runs/demo
# Test files run on this many worker processes (pytest-xdist; a file's tests stay on one worker and share its
# fixtures). 1 = the plain serial run.
TEST_WORKERS ?= 2
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision in the same pip command as the rest: the only pair whose torchvision imports here.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1 -e '.[peers,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(RUN)

test: $(STAMP)
	bash scripts/install_chromium.sh
	bash scripts/install_postgresql.sh
	WANDB_MODE=disabled $(BIN)/python -m pytest -q --timeout 900 -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
