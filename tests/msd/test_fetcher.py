import numpy as np
import pandas as pd
import pytest

from msd import fetcher
from tests.fixtures_msd import interrupt_after, noise, write_mp3


@pytest.fixture()
def tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "audio"
    write_mp3(root / "3" / "1" / "222.clip.mp3", noise(2.0, rng))
    write_mp3(root / "0" / "9" / "111.clip.mp3", noise(1.0, rng))
    (root / "5" / "5").mkdir(parents=True)
    (root / "5" / "5" / "333.clip.mp3").write_bytes(b"")
    (root / "5" / "5" / "444.clip.mp3").write_bytes(rng.bytes(4000))
    (root / "5" / "5" / "notes.txt").write_text("not a clip")
    (root / "5" / "5" / "555.mp3").write_bytes(b"not a clip name")
    return root


def test_scan_reads_headers_and_keeps_unreadable(tree):
    table = fetcher.scan(tree)
    assert list(table.columns) == fetcher.COLUMNS
    assert table["file_path"].tolist() == ["0/9/111.clip.mp3", "3/1/222.clip.mp3", "5/5/333.clip.mp3",
                                           "5/5/444.clip.mp3"]
    assert table["track_7digitalid"].tolist() == [111, 222, 333, 444]
    good = table.set_index("track_7digitalid")
    assert good.loc[222, "clip_length"] == pytest.approx(2.0, abs=0.1)
    assert good.loc[111, "clip_length"] == pytest.approx(1.0, abs=0.1)
    assert good.loc[222, "channels"] == 2 and good.loc[222, "sample_rate"] == 44100
    assert good.loc[333, "file_size"] == 0 and good.loc[444, "file_size"] == 4000
    assert good.loc[[333, 444], ["channels", "sample_rate", "clip_length"]].isna().all().all()


def test_cli_writes_csv_refuses_overwrite_and_parallel_matches(tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fetcher, "FILES_PER_WORKER", 1)  # really start 2 workers on this tiny tree
    out = tmp_path / "fetcher.csv"
    assert fetcher.main([str(out), "--root-dir", str(tree), "--quiet", "--jobs", "1"]) == 0
    first = pd.read_csv(out)
    assert len(first) == 4 and first["clip_length"].isna().sum() == 2
    assert fetcher.main([str(out), "--root-dir", str(tree), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0]
    assert fetcher.main([str(out), "--root-dir", str(tree), "--quiet", "--jobs", "2", "--overwrite"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), first)
    assert not list(tmp_path.glob(".fetcher.csv.*"))  # no temporary left behind


def test_missing_root_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert fetcher.main([str(tmp_path / "f.csv"), "--root-dir", str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]
    assert not (tmp_path / "f.csv").exists()


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        fetcher.main(["--help"])
    assert exit_.value.code == 0
    assert "orpheus fetcher fetcher.csv --root-dir" in capsys.readouterr().out


def test_interrupted_scan_resumes_from_its_log(tree, tmp_path, monkeypatch):
    out = tmp_path / "fetcher.csv"
    real, calls = interrupt_after(monkeypatch, fetcher, "read_header")
    with pytest.raises(KeyboardInterrupt):
        fetcher.run(out, tree, quiet=True)
    assert not out.exists() and fetcher.partial_path(out).is_file()
    reread = []
    monkeypatch.setattr(fetcher, "read_header", lambda path: reread.append(path) or real(path))
    table = fetcher.run(out, tree, quiet=True)
    assert sorted(reread) == sorted(set(str(tree / p) for p in table["file_path"]) - set(calls))
    pd.testing.assert_frame_equal(table, fetcher.scan(tree))
    assert not fetcher.partial_path(out).exists()


def test_header_error_tells_unreadable_from_corrupt(tree, tmp_path, monkeypatch, capsys):
    """A file the file system will not give us is "unreadable" with its reason, not "corrupt"."""
    import builtins
    import errno
    import os
    (tree / "6").mkdir()
    os.symlink(tmp_path / "gone.mp3", tree / "6" / "666.clip.mp3")  # a dangling link: crashed the scan before
    forbidden = str(tree / "3" / "1" / "222.clip.mp3")  # a good mp3 we may not read (as root no chmod does it)

    def guarded_open(path, *args, **kwargs):
        if str(path) == forbidden:
            raise PermissionError(errno.EACCES, "Permission denied", forbidden)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(fetcher, "open", guarded_open, raising=False)
    out = tmp_path / "fetcher.csv"
    assert fetcher.main([str(out), "--root-dir", str(tree), "--quiet", "--jobs", "1"]) == 0
    table = pd.read_csv(out).set_index("track_7digitalid")
    assert table.loc[111, "header_error"] != table.loc[111, "header_error"]  # NaN: a good header
    assert table.loc[[222, 333, 444, 666], "header_error"].tolist() == [
        "unreadable: Permission denied", "empty file (0 bytes)",
        "corrupt: neither mutagen nor libsndfile can parse an mp3 header", "unreadable: No such file or directory"]
    assert table.loc[[222, 666], ["channels", "sample_rate", "clip_length"]].isna().all().all()
    assert "4 without a header: 1 empty, 2 unreadable, 1 corrupt" in capsys.readouterr().out


def test_resume_ignores_progress_logs_without_header_error(tree, tmp_path):
    """A progress log of an older fetcher (4 fields a header) is read again, not trusted."""
    import json
    out = tmp_path / "fetcher.csv"
    fetcher.partial_path(out).write_text(json.dumps(["5/5/444.clip.mp3", [4000, 2, 44100, 9.0]]) + "\n")
    table = fetcher.run(out, tree, quiet=True).set_index("track_7digitalid")
    assert np.isnan(table.loc[444, "clip_length"]) and table.loc[444, "header_error"].startswith("corrupt")


def test_a_folder_that_cannot_be_listed_is_a_warning(tree, monkeypatch, caplog):
    import errno
    import os
    real_scandir = os.scandir
    blocked = str(tree / "5")

    def guarded_scandir(path="."):
        if str(path) == blocked:
            raise PermissionError(errno.EACCES, "Permission denied", blocked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded_scandir)
    with caplog.at_level("WARNING", logger="msd.fetcher"):
        table = fetcher.scan(tree)
    assert table["track_7digitalid"].tolist() == [111, 222]
    assert f"{blocked}: cannot list the folder (Permission denied)" in caplog.text
