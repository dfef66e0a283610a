"""Features of orpheus.audio.decode against librosa 0.11 (the reference) on music, and streaming decode.

The music: generated clips always, the real clips of ../shared/audio too when present (`music_dir`).
"""

import numpy as np
import pytest
import scipy.fft
import scipy.sparse
import soundfile as sf

from orpheus.audio import decode as audio
from orpheus.audio import features as audio_features
from orpheus.errors import AudioDecodeError, ConfigError

librosa = pytest.importorskip("librosa")

N_CLIPS = 8  # of the 50 shared clips: enough variety, a few seconds in all


@pytest.fixture(scope="module")
def music(music_dir):
    """Music clips (generated or real) decoded at 16 kHz: list of float32 [n_samples]."""
    paths = sorted(music_dir.glob("*.ogg"))[:N_CLIPS]
    return [audio.load_audio(path, 16000)[0] for path in paths]


@pytest.mark.parametrize("sample_rate, n_fft, n_mels, fmin, fmax", [
    (16000, 2048, 96, 0.0, None),
    (16000, 512, 96, 0.0, None),
    (22050, 1024, 40, 50.0, 8000.0),
    (44100, 4096, 128, 0.0, None),
])
def test_mel_filterbank_matches_librosa(sample_rate, n_fft, n_mels, fmin, fmax):
    ours = audio_features.mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape == (n_mels, 1 + n_fft // 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


def test_power_spectrogram_matches_librosa_stft(music):
    y = music[0]
    ours = audio_features.power_spectrogram(y, 2048, 512)
    ref = (np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2).T
    assert ours.shape == ref.shape == (1 + len(y) // 512, 1025) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * ref.max())


def _mel_power_in_one_block(y, sample_rate, n_mels, n_fft, hop):
    """The mel power as computed before blocks: every frame of the padded track windowed at once,
    one rfft over the last axis, the filterbank product through scipy's CSC kernel."""
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, n_fft // 2), n_fft)[::hop]
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    spectrum = scipy.fft.rfft(frames * window, axis=-1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    filters_t = scipy.sparse.csr_matrix(audio_features.mel_filterbank(sample_rate, n_fft, n_mels).T.astype(np.float32))
    return np.asarray((filters_t.T @ power.T).T)


@pytest.mark.parametrize("n_samples, n_fft, hop", [
    (16000 * 5, 2048, 512), (16000 * 5, 512, 256), (12345, 1023, 100), (300, 2048, 512), (700, 512, 512),
])
def test_mel_power_in_blocks_equals_one_block_bit_for_bit(music, n_samples, n_fft, hop):
    """Blocks (and the zero padding built per block) change no bit: shards stay what earlier versions wrote."""
    y = np.concatenate(music[:1] * 6)[:n_samples]
    ours = audio_features.mel_power(y, 16000, 64, n_fft, hop)
    assert ours.dtype == np.float32 and ours.shape == (1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop, 64)
    np.testing.assert_array_equal(ours, _mel_power_in_one_block(y, 16000, 64, n_fft, hop))
    np.testing.assert_array_equal(audio_features.mel_power(y[::2], 16000, 64, n_fft, hop),  # a strided view
                                  _mel_power_in_one_block(y[::2].copy(), 16000, 64, n_fft, hop))


def test_db_preset_within_1e3_db_of_librosa_on_music(music):
    worst = 0.0
    for y in music:
        ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_mels=96),
                                  ref=1.0, amin=1e-10, top_db=80).T
        ours = audio_features.log_mel(y, 16000, 96, compression="db")
        assert ours.shape == ref.shape and ours.dtype == np.float32
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst < 1e-3


def test_musicnn_preset_matches_musicnn_recipe(music):
    for y in music[:3]:
        mel = librosa.feature.melspectrogram(y=y, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
        ref = np.log10(10000 * mel + 1)
        ours = audio_features.features(y, 16000, format="log-mel-spectrogram", preset="musicnn")
        assert ours.shape == ref.shape == (1 + len(y) // 256, 96) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_mfcc_matches_librosa(music):
    for y in music[:3]:
        ref = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=20).T
        ours = audio_features.mfcc(y, 16000, n_mfcc=20)
        assert ours.shape == ref.shape == (1 + len(y) // 512, 20)
        np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=0)
    via_dispatch = audio_features.features(music[0], 16000, format="mfcc", n_mels=128, n_mfcc=13)
    np.testing.assert_allclose(via_dispatch, audio_features.mfcc(music[0], 16000, 13), atol=0)


def test_features_dispatch_and_waveform_passthrough(music):
    y = music[0]
    np.testing.assert_array_equal(audio_features.features(y, 16000, format="waveform"), y)
    db = audio_features.features(y, 16000, format="log-mel-spectrogram", n_mels=64, n_fft=1024, hop_length=320, preset="db")
    assert db.shape == (1 + len(y) // 320, 64)
    np.testing.assert_array_equal(db, audio_features.log_mel(y, 16000, 64, 1024, 320, "db"))
    assert db.max() - db.min() <= 80.0 + 1e-4  # top_db floor
    with pytest.raises(ConfigError, match="preset"):
        audio_features.features(y, 16000, format="log-mel-spectrogram", preset="nope")
    with pytest.raises(ConfigError, match="format"):
        audio_features.features(y, 16000, format="cqt")


def test_log_mel_of_a_tone_peaks_in_its_band():
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    spec = audio_features.log_mel(tone, 16000, 96)
    centres = audio_features._mel_to_hz(np.linspace(0, audio_features._hz_to_mel(8000.0), 98))[1:-1]
    assert abs(centres[int(np.argmax(spec[10]))] - 1000.0) < 60.0


@pytest.mark.parametrize("ext, rate, channels", [("ogg", 22050, 1), ("mp3", 44100, 2), ("wav", 16000, 2)])
def test_stream_mono_equals_load_audio(tmp_path, music, ext, rate, channels):
    y = np.concatenate(music[:2])[: 12 * 16000]
    source = audio.resample(y, 16000, rate)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, np.stack([source * (0.5 + 0.5 * c) for c in range(channels)], axis=1), rate)
    whole, _ = audio.load_audio(path, 16000)
    blocks = list(audio.stream_mono(path, 16000, block_s=2.5))
    assert len(blocks) >= 4 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    streamed = np.concatenate(blocks)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-4, rtol=0)
    native = np.concatenate(list(audio.stream_mono(path, None, block_s=1.0)))
    np.testing.assert_array_equal(native, audio.load_audio(path)[0])


def test_stream_mono_bad_file(tmp_path):
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioDecodeError, match="junk.mp3"):
        list(audio.stream_mono(junk, 16000))
