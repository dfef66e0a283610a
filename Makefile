# Two entry points for a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   set up, then run every stage on the built-in synthetic MSD demo corpus (orpheus demo)
#   make test   set up, then run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# exiftool, ffprobe (ffmpeg) and mediainfo: the tests read the tags Orpheus writes with the tools people use;
# libsndfile1 brings libmpg123, which mixes stereo mp3s to mono as it decodes (orpheus/audio/mp3.py)
APT_PACKAGES := libportaudio2 libsndfile1 libasound2 fluidsynth timgm6mb-soundfont musescore-general-soundfont-small \
	libimage-exiftool-perl ffmpeg mediainfo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test test-all bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,beam,export,openvino]"
	# musicnn ships the pretrained checkpoints; its pins cannot be met, and we never import its code.
	$(PY) -m pip install --quiet --no-deps musicnn==0.1.0
	touch $@

system-packages:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); }

setup: system-packages $(VENV)/.installed

demo: setup
	$(VENV)/bin/orpheus demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -n 2 -m "" $(PYTEST_ARGS)

bench: setup
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_work
