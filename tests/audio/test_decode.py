import numpy as np
import pytest
import soundfile as sf

from orpheus.audio.decode import decode, load_audio, resample, to_mono
from orpheus.errors import AudioDecodeError, MissingInputError


def _tone(sample_rate, seconds, freq=440.0, channels=2):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([mono] * channels, axis=1).astype(np.float32)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg"])
def test_decode_formats(tmp_path, ext):
    path = tmp_path / f"x.{ext}"
    sf.write(path, _tone(44100, 1.0), 44100)
    audio, rate = decode(path)
    assert rate == 44100 and audio.dtype == np.float32 and audio.shape[1] == 2
    assert abs(audio.shape[0] - 44100) < 3000  # mp3/ogg encoders pad a little


def test_load_audio_resamples_to_mono(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, _tone(44100, 2.0, freq=1000.0), 44100)
    audio, rate = load_audio(path, 16000)
    assert rate == 16000 and audio.ndim == 1 and audio.dtype == np.float32
    assert audio.shape[0] == 32000
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 16000 / audio.shape[0] == pytest.approx(1000, abs=2)


def test_offset_and_duration(tmp_path):
    path = tmp_path / "x.wav"
    ramp = np.linspace(-1, 1, 8000, dtype=np.float32)
    sf.write(path, ramp, 8000, subtype="FLOAT")
    audio, _ = load_audio(path, offset_s=0.5, duration_s=0.25)
    np.testing.assert_allclose(audio, ramp[4000:6000])


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(MissingInputError, match="nope.mp3"):
        decode(tmp_path / "nope.mp3")
    empty = tmp_path / "empty.clip.mp3"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"empty.clip.mp3: empty file \(0 bytes\)"):
        decode(empty)
    junk = tmp_path / "junk.clip.mp3"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioDecodeError, match="junk.clip.mp3: cannot decode audio .not a recognised audio format"):
        decode(junk)


def test_to_mono_and_resample_identity():
    stereo = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_mono(stereo), [0.5, 0.5])
    x = np.ones(10, dtype=np.float32)
    assert resample(x, 16000, 16000) is x
