# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast constraints clean

setup: $(VENV)/.installed

# --system-site-packages keeps a torch the machine already has (e.g. a CUDA build);
# otherwise torch is pinned to 2.13.0 so pip never pulls a multi-GB CUDA build by itself.
# constraints.txt: the versions the test suite last passed with, so every set-up (and CI)
# installs that set; it leaves torch out, so the torch above is always kept.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/dtm demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# After upgrading packages and passing `make test`: record the new known-good set.
constraints: setup
	{ echo "# Versions the test suite passed with (make constraints; torch is kept as installed)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -i -e '^torch==' -e '^dtmerge'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf runs .pytest_cache
