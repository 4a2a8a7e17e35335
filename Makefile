# Everything a fresh machine with only Python needs: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned CPU-friendly torch, installed before the project so pip never pulls a multi-GB CUDA build.
# Override on a GPU machine, e.g. `make TORCH="torch==2.13.0 --index-url ..." install`.
TORCH ?= torch==2.13.0
DEMO ?= demo

.PHONY: install demo test lint bench clean

$(BIN)/.installed: pyproject.toml setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/datakit synth acdc $(DEMO)/acdc --patients 8
	$(BIN)/datakit convert acdc $(DEMO)/acdc --out $(DEMO)/acdc.h5 --overwrite
	$(BIN)/datakit validate $(DEMO)/acdc.h5
	$(BIN)/datakit info $(DEMO)/acdc.h5
	$(BIN)/datakit stats $(DEMO)/acdc.h5 --plots $(DEMO)/stats
	$(BIN)/datakit preview $(DEMO)/acdc.h5 --out $(DEMO)/preview.png --n 8
	# a short CPU run of MAAG (narrow UNet, 20 steps), then 3D Dice/HD95 on test, its curves and a PNG preview;
	# one torch thread: on a shared machine two threads spin-wait on each other
	OMP_NUM_THREADS=1 $(BIN)/train run --store $(DEMO)/acdc.h5 --out $(DEMO)/run --method maag --max-steps 20 \
		--batch-size 4 --width 8 --eval-every 10
	OMP_NUM_THREADS=1 $(BIN)/train eval --run $(DEMO)/run --split test --json $(DEMO)/eval.json
	$(BIN)/train plot $(DEMO)/run --out $(DEMO)/curves.png
	OMP_NUM_THREADS=1 $(BIN)/train predict --checkpoint $(DEMO)/run/checkpoints/best.pt --store $(DEMO)/acdc.h5 \
		--out $(DEMO)/pred --split test --format png --preview $(DEMO)/prediction.png

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check datakit train tests benchmarks

bench: install
	$(BIN)/python benchmarks/convert_acdc.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
