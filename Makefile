# The two set-up commands of the README are `make run` and `make test`; both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv run test test-slow lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision first, pinned to the pair this project is tested with (a CUDA build that
	# runs on the CPU); then the package and its test tools.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	# FFmpeg 4.2.2 (from PyPI's imageio-ffmpeg 0.4.9 wheel): MPEG's anchor scripts' colour
	# conversion, run with the FFmpeg generation they were written for (docs/anchors.md).
	$(BIN)/python -m vcm_eval.codecs.vvc.mpeg_ffmpeg
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/python -m vcm_eval.suite

test: venv
	$(BIN)/python -m pytest -q
	$(BIN)/mypy vcm_eval

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

lint: venv
	$(BIN)/ruff check vcm_eval tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
