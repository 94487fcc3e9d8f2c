# The two commands of the README:
#   make book   set up, build the offline assets, execute every chapter in the default profile,
#               write the HTML book to _build/html
#   make test   set up, then unit tests, nbval over every chapter in the smoke profile,
#               and a smoke build of the book with Sphinx warnings as errors
#
# TORCH is what pip installs for PyTorch before the project. The default pins the CPU wheel that
# CPU-only CI machines carry; on a GPU machine say `make book TORCH=torch` (a floor is in pyproject).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSTEM_STAMP := data/build/.system-packages

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MPLBACKEND := Agg
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test setup assets unit nbval book-smoke clean

book: assets
	$(PY) -m jupyter_book build --all .
	@echo "book written to _build/html/index.html"

test: assets unit nbval book-smoke

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[book,test]"
	$(PY) -m pip install -q --no-deps -r data/requirements-nodeps.txt
	touch $@

# Debian packages the assets and the browser test need (the Bible, Austen's novels, Chromium).
$(SYSTEM_STAMP): data/debian-packages.txt
	bash data/install_system_packages.sh data/debian-packages.txt
	mkdir -p $(dir $@) && touch $@

assets: setup $(SYSTEM_STAMP)
	$(PY) -m hyena_lite data

unit: assets
	$(PY) -m pytest -q tests

nbval: assets
	HYENA_BOOK_PROFILE=smoke $(PY) -m pytest -q --nbval-lax -p no:cacheprovider book/

book-smoke: assets
	HYENA_BOOK_PROFILE=smoke $(PY) -m jupyter_book build --all -W -n --keep-going .

clean:
	rm -rf _build
