import numpy as np
import pytest
import soundfile as sf

from orpheus.audio import mp3
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


# --------------------------------------------------------------------------- stereo mp3s mixed in the decoder
def _stereo_mp3(music_dir, path, seconds=6.0):
    """A 44.1 kHz stereo mp3 of two different clips of `music_dir` (left and right differ)."""
    left, right = (load_audio(clip, 44100)[0][: int(seconds * 44100)] for clip in sorted(music_dir.glob("*.ogg"))[:2])
    sf.write(path, 0.8 * np.stack([left, right], axis=1), 44100)
    return path


def test_a_stereo_mp3_mixed_in_the_decoder_is_soundfiles_channel_mean(music_dir, tmp_path):
    if not mp3.available():
        pytest.skip("no libmpg123 on this machine (Debian: libmpg123-0): stereo mp3s are decoded with soundfile")
    path = _stereo_mp3(music_dir, tmp_path / "song.mp3")
    with sf.SoundFile(path) as f:
        assert (f.format, f.channels) == ("MP3", 2)
        n_frames = f.frames
    mixed = mp3.decode_mono(path, 44100, 0, n_frames)
    assert mixed is not None and mixed.dtype == np.float32 and mixed.shape == (n_frames,)
    reference = to_mono(decode(path)[0])
    assert np.abs(mixed - reference).max() < 1e-5 and np.abs(reference).max() > 0.1
    np.testing.assert_array_equal(load_audio(path)[0], mixed)  # load_audio takes this path
    for offset_s, duration_s in ((1.3, 2.0), (0.0, 0.5), (4.77, None), (5.999, 10.0)):
        ours = load_audio(path, offset_s=offset_s, duration_s=duration_s)[0]
        theirs = to_mono(decode(path, offset_s=offset_s, duration_s=duration_s)[0])
        assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-5
    with pytest.raises(AudioDecodeError, match="no audio samples"):  # past the end, as soundfile says
        load_audio(path, offset_s=60.0)


def test_without_libmpg123_soundfile_decodes_stereo_mp3s(generated_audio_dir, tmp_path, monkeypatch):
    path = _stereo_mp3(generated_audio_dir, tmp_path / "song.mp3", seconds=2.0)
    monkeypatch.setattr(mp3, "_library", lambda: None)
    assert not mp3.available() and mp3.decode_mono(path, 44100, 0, 100) is None
    np.testing.assert_array_equal(load_audio(path)[0], to_mono(decode(path)[0]))


def test_only_stereo_mp3s_take_the_decoders_mix(generated_audio_dir, tmp_path):
    # a WAV named .mp3 is what libsndfile says it is; a mono mp3 needs no mix
    wav = tmp_path / "really_a_wav.mp3"
    sf.write(wav, _tone(8000, 0.5), 8000, format="WAV", subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(wav)[0], to_mono(decode(wav)[0]))
    mono = tmp_path / "mono.mp3"
    sf.write(mono, _tone(44100, 1.0, channels=1), 44100)
    np.testing.assert_array_equal(load_audio(mono)[0], decode(mono)[0][:, 0])
    # a truncated stereo mp3: whatever soundfile decodes of it, the mix has the same length
    whole = _stereo_mp3(generated_audio_dir, tmp_path / "whole.mp3", seconds=3.0)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    ours, theirs = load_audio(cut)[0], to_mono(decode(cut)[0])
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-5
