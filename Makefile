# make demo : set up .venv, generate the demo data, train and evaluate a small RefineMask on CPU
# make test : set up .venv and run the test suite
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
DEMO_CONFIG ?= configs/demo/refinemask_r18_shapes.py
DEMO_WORK_DIR ?= work_dirs/demo_refinemask
# test processes: one per logical CPU ("logical"; "auto" counts physical cores when psutil is
# installed: one on a 2-vCPU machine with hyper-threading). Every test runs on one thread
# (tests/conftest.py), so a single process would leave the other cores idle. Files are kept
# whole (--dist loadfile): a module's trained fixture is built once. They are handed out in
# collection order, costly folders first (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= logical

.PHONY: install demo test data clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py insplug/scripts/install_mmcv.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel 'setuptools<81'  # mmengine needs pkg_resources
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	SHARED_WHEELS=$(SHARED)/wheels bash insplug/scripts/install_mmcv.sh $(PY)
	$(PY) -m pip install --no-build-isolation -e '.[mmdet,test]'
	$(PY) -c "import mmcv.ops, mmdet, insplug; print('insplug', insplug.__version__, 'ready')"
	touch $@

data: install
	$(PY) -m insplug.datasets.shapes --out data/shapes --num-train 300 --num-val 60

demo: data
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) $$(cat $(DEMO_WORK_DIR)/last_checkpoint) \
		--work-dir $(DEMO_WORK_DIR)

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) work_dirs data
