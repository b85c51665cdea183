# Two commands do everything: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint sysdeps bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

sysdeps:
	./scripts/install-system-deps.sh

run: $(STAMP) sysdeps
	$(PY) -m bot serve --migrate --demo

# TEST_DATABASE_URL=postgres://... make test runs the same suite on PostgreSQL.
test: $(STAMP) sysdeps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)

# Every bench script at quick sizes (BENCH_QUICK=0: the full sizes the README's figures come from);
# the first that fails stops the run and fails it. bench/compare.py needs --old DIR: run it by hand.
BENCH_QUICK ?= 1
bench: $(STAMP)
	@for f in bench/*.py; do \
	  case $$f in \
	    bench/__init__.py) continue ;; \
	    bench/compare.py) echo "== $$f: skipped (needs --old DIR, a worktree of an older commit; run by hand)"; continue ;; \
	  esac; \
	  echo "== $$f"; BENCH_QUICK=$(BENCH_QUICK) $(PY) $$f || { echo "FAILED: $$f"; exit 1; }; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
