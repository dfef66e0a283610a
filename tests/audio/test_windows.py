import numpy as np
import pytest

from orpheus.errors import DataFormatError
from orpheus.audio.settings import FeatureSettings
from orpheus.formats.rundir import RunInfo, read_run_info, write_run_info
from orpheus.audio.windows import cut_windows, normalise_windows, normalise_windows_np, window_starts


def test_last_window_aligned_to_end():
    assert window_starts(100, 30).tolist() == [0, 30, 60, 70]
    assert window_starts(90, 30).tolist() == [0, 30, 60]
    assert window_starts(100, 30, 50).tolist() == [0, 50, 70]
    assert window_starts(10, 30).tolist() == [0]
    with pytest.raises(DataFormatError):
        window_starts(10, 0)


def test_cut_windows_content_and_padding():
    features = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    windows = cut_windows(features, 4)
    assert windows.shape == (3, 4, 3)
    np.testing.assert_array_equal(windows[-1, :, 0], [6, 7, 8, 9])
    short = cut_windows(features[:2], 4)
    np.testing.assert_array_equal(short[0, :, 0], [0, 1, 0, 0])


def test_normalisation_modes(tmp_path):
    rng = np.random.default_rng(1)
    windows = (5 + 3 * rng.standard_normal((4, 20, 2))).astype(np.float32)
    base = dict(tags=("a",), features=FeatureSettings("log-mel-spectrogram", 16000, n_mels=2, n_fft=512, hop_length=256),
                window_s=1.0)
    per_example = normalise_windows(windows, RunInfo(**base)).numpy()
    np.testing.assert_allclose(per_example.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(per_example.std(axis=(1, 2)), 1, atol=1e-3)
    info = RunInfo(**base, normalise="dataset", feature_mean=(5.0, 1.0), feature_std=(3.0, 1.0))
    dataset = normalise_windows(windows, info).numpy()
    np.testing.assert_allclose(dataset[..., 0], (windows[..., 0] - 5) / 3, rtol=1e-5)
    assert normalise_windows(windows, RunInfo(**base, normalise="none")).numpy() is not None
    write_run_info(tmp_path, info)
    assert read_run_info(tmp_path) == info
    assert info.window_frames == 62


@pytest.mark.parametrize("mode", ["per_example", "dataset", "none"])
def test_numpy_normalisation_equals_tensorflow(mode):
    """Tagging without TensorFlow (--precision fast) normalises as the input pipeline does."""
    rng = np.random.default_rng(2)
    windows = (4 + 2 * rng.standard_normal((3, 50, 4))).astype(np.float32)
    info = RunInfo(tags=("a",), features=FeatureSettings("log-mel-spectrogram", 16000, n_mels=4, n_fft=512,
                                                         hop_length=256), window_s=1.0, normalise=mode,
                   feature_mean=(4.0, 3.0, 2.0, 1.0) if mode == "dataset" else (),
                   feature_std=(2.0, 1.0, 0.5, 3.0) if mode == "dataset" else ())
    expected = normalise_windows(windows, info).numpy()
    got = normalise_windows_np(windows, info)
    assert got.dtype == np.float32 and got.shape == windows.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if mode != "none":
        assert not np.allclose(got, windows)
