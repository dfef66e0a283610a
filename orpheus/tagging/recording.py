"""Record from the default input device (microphone) for `test_model.py predict --record`.

Uses `sounddevice` (PortAudio): mono float32 at the model's sample rate, a countdown and a progress
bar on stderr. Failures (PortAudio library missing, no input device, device refusing the settings)
raise `AudioDeviceError` with the fix: `apt-get install libportaudio2`, `python -m sounddevice`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from orpheus.errors import AudioDeviceError, ConfigError
from orpheus.files import atomic_path
from orpheus.ownership import FileKind, has_software_field, software_name

RECORDING = FileKind("recording", has_software_field)   # a WAV whose "Software" field names Orpheus

log = logging.getLogger(__name__)

DEVICE_HELP = "list the devices with `python -m sounddevice` and check the default input"
LIBRARY_HELP = "install the PortAudio library: apt-get install libportaudio2"


def import_sounddevice():
    """Import `sounddevice`, turning a missing PortAudio library into `AudioDeviceError`."""
    try:
        import sounddevice
    except OSError as err:  # sounddevice raises OSError("PortAudio library not found")
        raise AudioDeviceError(f"cannot load PortAudio ({err}); {LIBRARY_HELP}, then {DEVICE_HELP}") from err
    except ImportError as err:
        raise AudioDeviceError(f"the sounddevice package is missing ({err}); pip install sounddevice and "
                               f"{LIBRARY_HELP}") from err
    return sounddevice


def input_device() -> dict:
    """The default input device's description (`sounddevice.query_devices(kind="input")`).

    Raises:
        AudioDeviceError: PortAudio is missing or there is no input device.
    """
    sd = import_sounddevice()
    try:
        return dict(sd.query_devices(kind="input"))
    except (sd.PortAudioError, ValueError) as err:
        raise AudioDeviceError(f"no audio input device ({err}); connect a microphone, or {DEVICE_HELP}; "
                               f"if PortAudio finds no devices at all, {LIBRARY_HELP}") from err


def record(duration_s: float, sample_rate: int, *, countdown_s: int = 3, quiet: bool = False,
           block_s: float = 0.25) -> np.ndarray:
    """Record `duration_s` seconds from the default input device.

    Args:
        duration_s: seconds to record (> 0).
        sample_rate: Hz; the device (or ALSA's plug layer) resamples if it must.
        countdown_s: seconds of "recording in N..." on stderr before starting (0: none).
        quiet: hide the countdown and the progress bar.
        block_s: seconds read per stream call (progress granularity).

    Returns:
        float32 [round(duration_s * sample_rate)], mono, in [-1, 1].

    Raises:
        AudioDeviceError: PortAudio missing, no input device, or the device failed.
    """
    if duration_s <= 0:
        raise ConfigError(f"--record-length must be positive, got {duration_s}")
    sd = import_sounddevice()
    device = input_device()
    log.info("recording from %s", device.get("name", "the default input"))
    for remaining in range(countdown_s, 0, -1):
        if not quiet:
            print(f"\rrecording in {remaining}...", end="", file=sys.stderr, flush=True)
        time.sleep(1)
    if countdown_s and not quiet:
        print("\rrecording now     ", file=sys.stderr, flush=True)
    n_samples = int(round(duration_s * sample_rate))
    block = max(1, int(block_s * sample_rate))
    # 16-bit capture, like a wav file: every PortAudio host API and ALSA plugin supports it
    out = np.empty(n_samples, np.int16)
    got = 0
    bar = tqdm(total=round(duration_s, 2), desc="recording", unit="s", disable=quiet, dynamic_ncols=True,
               file=sys.stderr, bar_format="{desc}: {bar} {n:.1f}/{total:.1f} s")
    try:
        with sd.InputStream(samplerate=sample_rate, channels=1, dtype="int16", blocksize=block) as stream:
            while got < n_samples:
                data, overflowed = stream.read(min(block, n_samples - got))
                if overflowed:
                    log.warning("input overflow: some samples were dropped by the device")
                out[got:got + data.shape[0]] = data[:, 0]
                got += data.shape[0]
                bar.update(data.shape[0] / sample_rate)
    except sd.PortAudioError as err:
        raise AudioDeviceError(f"recording failed on {device.get('name', 'the default input')} ({err}); "
                               f"{DEVICE_HELP}") from err
    finally:
        bar.close()
    return out.astype(np.float32) / np.float32(32768)  # the scaling libsndfile uses for 16-bit PCM


def save_recording(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write float32 [n_samples] mono audio as a 16-bit PCM wav, atomically."""
    import soundfile as sf
    with atomic_path(path) as tmp, sf.SoundFile(str(tmp), "w", sample_rate, 1, "PCM_16", format="WAV") as f:
        f.software = software_name()   # the mark: a recording Orpheus wrote (RECORDING)
        f.write(samples)
