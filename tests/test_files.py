import subprocess
import sys
from pathlib import Path

import pytest

from orpheus import cli
from orpheus.errors import DataFormatError, OutputExistsError
from orpheus.files import atomic_dir, atomic_path, check_output, partial_path, read_partial, write_csv_atomic
from orpheus.ownership import MARKER, FolderKind, ForeignOutputError, claim, csv_kind, marker_kind
from orpheus.parallel import batched, parallel_map
from tests.fixtures_disk import full_disk  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_csv_atomic(target, ["a", "b"], [[1, 2]])
    assert target.read_text().splitlines() == ["a,b", "1,2"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os
    previous = os.umask(0o022)
    try:
        write_csv_atomic(tmp_path / "x.csv", ["a"], [[1]])
    finally:
        os.umask(previous)
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == 0o644


def test_check_output_replaces_only_its_own_kind_and_only_with_overwrite(tmp_path):
    kind = csv_kind("fruit table", ("fruit", "count"))
    target = tmp_path / "x.csv"
    target.write_text("")
    assert check_output(target, kind) == target     # an empty file is free
    write_csv_atomic(target, ["fruit", "count", "colour"], [["fig", 3, "purple"]])
    with pytest.raises(OutputExistsError, match="a fruit table written by Orpheus is already there; pass --overwrite"):
        check_output(target, kind, overwrite=False)
    assert check_output(target, kind, overwrite=True) == target
    assert claim(target, kind, resume=True) == "resume"
    target.write_text("fruit;count\nfig;3\n")      # someone else's
    with pytest.raises(ForeignOutputError, match=r"holds a text file \(18 bytes\), not a fruit table written by"):
        check_output(target, kind, overwrite=True)


def test_folder_kinds_are_marked_and_earlier_ones_recognised(tmp_path):
    kind = FolderKind("fruit basket", legacy=lambda folder: (folder / "basket.json").is_file())
    out = tmp_path / "basket"
    with atomic_dir(out, kind) as tmp:
        (tmp / "fig").write_text("1")
    assert marker_kind(out) == "fruit basket" and claim(out, kind, overwrite=True) == "replace"
    assert "a fruit basket written by Orpheus" in str(pytest.raises(OutputExistsError, claim, out, kind).value)
    other = FolderKind("crate")
    with pytest.raises(ForeignOutputError, match="holds a fruit basket written by Orpheus, not a crate"):
        claim(out, other, overwrite=True)
    old = tmp_path / "old"
    old.mkdir()
    (old / "basket.json").write_text("{}")      # written before the marker existed
    assert claim(old, kind, resume=True) == "resume" and claim(old, kind, overwrite=True) == "replace"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim(empty, other) == "new"
    with atomic_dir(empty, other) as tmp:
        (tmp / "x").write_text("")
    assert sorted(p.name for p in empty.iterdir()) == [MARKER, "x"]


def test_an_output_may_not_be_nor_hold_its_input(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    kind = FolderKind("export")
    for out, problem in ((run, "is the run itself"), (tmp_path / "runs", "holds the run"),
                         (tmp_path / "link", "is the run itself")):
        if out.name == "link":
            out.symlink_to(run)
        with pytest.raises(ForeignOutputError, match=problem):
            claim(out, kind, overwrite=True, inputs=[(run, "run")])
    assert claim(run / "inside", kind, inputs=[(run, "run")]) == "new"
    with pytest.raises(ForeignOutputError, match="lies inside the run"):
        claim(run / "inside", kind, inputs=[(run, "run")], read_whole=[run])


def _square(x):
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_parallel_map_keeps_order(jobs):
    assert list(parallel_map(_square, list(range(50)), jobs=jobs, desc="t", quiet=True)) == [x * x for x in range(50)]


@pytest.mark.parametrize("max_pending", [1, 3])
def test_parallel_map_bounded_keeps_order(max_pending):
    got = list(parallel_map(_square, list(range(40)), jobs=2, desc="t", quiet=True, max_pending=max_pending))
    assert got == [x * x for x in range(40)]


def _niceness(_):
    import os
    return os.nice(0)


def test_parallel_map_lowers_the_workers_priority_when_asked():
    import os
    mine = os.nice(0)
    got = set(parallel_map(_niceness, list(range(6)), jobs=2, desc="t", quiet=True, worker_nice=5, max_pending=2))
    assert got == {min(mine + 5, 19)}
    assert set(parallel_map(_niceness, list(range(6)), jobs=2, desc="t", quiet=True)) == {mine}


def _blas_threads(_):
    import numpy as np
    from threadpoolctl import threadpool_info
    np.ones((64, 64)) @ np.ones((64, 64))  # OpenBLAS is loaded and has run
    return tuple(sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}))


def test_parallel_map_workers_run_blas_on_one_thread():
    """One process per core already: each worker's BLAS threads would spin against the others'."""
    got = set(parallel_map(_blas_threads, list(range(4)), jobs=2, desc="t", quiet=True))
    assert got == {(1,)}


def test_batched():
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]


def test_run_main_turns_errors_into_one_line(capsys):
    parser = cli.make_parser("prog", "d", "e")
    cli.add_common_args(parser)

    def fail(args):
        raise DataFormatError("x.h5: wrong layout; use the MSD summary file")

    assert cli.run_main(parser, [], fail) == 1
    err = capsys.readouterr().err
    assert err == "prog: error: x.h5: wrong layout; use the MSD summary file\n"


def test_partial_log_ignores_a_torn_last_line(tmp_path):
    log = partial_path(tmp_path / "out.csv")
    assert log.name == ".out.csv.partial.jsonl"
    assert read_partial(log) == {}
    log.write_text('["a.mp3", [1, 2]]\n["b.mp3", {"x": 1}]\n["c.mp3", [3')
    assert read_partial(log) == {"a.mp3": [1, 2], "b.mp3": {"x": 1}}


def test_read_json_record(tmp_path):
    import dataclasses

    from orpheus.errors import MissingInputError
    from orpheus.files import read_json_record

    @dataclasses.dataclass(frozen=True)
    class Record:
        name: str
        tags: tuple[str, ...] = ()

    def read(path):
        return read_json_record(path, Record, what="record", tuple_keys=("tags",), missing="make it",
                                malformed="rewrite it")

    path = tmp_path / "r.json"
    with pytest.raises(MissingInputError, match="r.json: not found; make it"):
        read(path)
    path.write_text('{"name": "a", "tags": ["x", "y"]}')
    assert read(path) == Record("a", ("x", "y"))
    for text, why in (('{"name": "a", "colour": 1}', "unknown keys"), ("{not json", "Expecting"),
                      ('{"tags": []}', "name")):
        path.write_text(text)
        with pytest.raises(DataFormatError, match=f"r.json: malformed record .*{why}.*; rewrite it"):
            read(path)


# ------------------------------------------------------------------ full disk, read-only folder
def test_full_disk_is_one_line_naming_the_folder_and_leaves_nothing(tmp_path, full_disk):  # noqa: F811
    from orpheus.errors import OutputWriteError
    from orpheus.files import write_json_atomic, write_text_atomic
    (tmp_path / "kept.json").write_text("old")
    for write in (lambda p: write_text_atomic(p, "x" * 100_000), lambda p: write_json_atomic(p, {"a": 1}),
                  lambda p: write_csv_atomic(p, ["a"], [[1]] * 10_000)):
        with pytest.raises(OutputWriteError) as raised:
            write(tmp_path / "kept.json")
        assert str(raised.value) == f"{tmp_path}: no space left on device; free space or choose another output folder"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]  # no temporary left behind
        assert (tmp_path / "kept.json").read_text() == "old"


@pytest.mark.parametrize("code, message", [(30, "read-only file system; choose another output folder"),
                                           (13, "permission denied; choose an output folder you can write to"),
                                           (122, "disk quota exceeded; free space or choose another output folder")])
def test_read_only_or_forbidden_folder_is_one_line(tmp_path, monkeypatch, code, message):
    """As root, permission bits do not stop us: raise the errno where the kernel would (creating the file)."""
    import os
    from orpheus.errors import OutputWriteError

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / ".out.csv.tmp"))

    monkeypatch.setattr("orpheus.files.tempfile.mkstemp", refuse)
    with pytest.raises(OutputWriteError, match=f"^{tmp_path}: {message}$"):
        write_csv_atomic(tmp_path / "out.csv", ["a"], [[1]])
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder_by_permission_bits(tmp_path):
    import os
    from orpheus.errors import OutputWriteError
    if os.geteuid() == 0:
        pytest.skip("root ignores permission bits (the errno case is tested above)")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputWriteError, match=f"^{folder}: permission denied"):
            write_csv_atomic(folder / "out.csv", ["a"], [[1]])
    finally:
        folder.chmod(0o755)


def test_run_main_turns_any_writers_environment_errors_into_one_line(tmp_path, capsys):
    """Plain open() and TensorFlow's file writers (a real ENOSPC from /dev/full) get the same one line;
    an OSError the environment does not explain (a bug) keeps its traceback."""
    import errno
    import tensorflow as tf
    parser = cli.make_parser("prog", "d", "e")

    def tf_write(args):
        tf.io.write_file("/dev/full", tf.constant("x" * 100_000))

    assert cli.run_main(parser, [], tf_write) == 1
    err = capsys.readouterr().err
    assert err == "prog: error: /dev: no space left on device; free space or choose another output folder\n"

    def forbidden(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "history.csv"))

    assert cli.run_main(parser, [], forbidden) == 1
    assert capsys.readouterr().err == (f"prog: error: {tmp_path}: permission denied; choose an output folder "
                                       "you can write to\n")

    def tf_forbidden(args):
        raise tf.errors.PermissionDeniedError(None, None, f"{tmp_path}/ckpt/epoch-1_temp; Permission denied")

    assert cli.run_main(parser, [], tf_forbidden) == 1
    assert capsys.readouterr().err.startswith(f"prog: error: {tmp_path}/ckpt: permission denied")

    def out_of_memory(args):  # ResourceExhaustedError is also an allocation failure: not the disk's
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,96,187]")

    with pytest.raises(tf.errors.ResourceExhaustedError):
        cli.run_main(parser, [], out_of_memory)

    def bug(args):
        open(tmp_path / "missing" / "x")

    with pytest.raises(FileNotFoundError):
        cli.run_main(parser, [], bug)


def test_workers_are_forked_only_where_that_is_safe():
    """Forking this process is the cheapest start, but not with other threads running or an inference runtime
    loaded (their thread pools and locks would be inherited half-held): then the fork server starts them."""
    code = ("import threading, time\n"
            "from orpheus.parallel import parallel_map, start_method\n"
            "print(start_method(), list(parallel_map(abs, [-1, -2, -3], jobs=2, desc='t', quiet=True)))\n"
            "threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n"
            "print(start_method())\n")
    lines = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO,
                           timeout=120).stdout.splitlines()
    assert lines == ["fork [1, 2, 3]", "forkserver"]
    pytest.importorskip("onnxruntime")
    code = "import onnxruntime\nfrom orpheus.parallel import start_method\nprint(start_method())\n"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO,
                          timeout=120).stdout.split() == ["forkserver"]
