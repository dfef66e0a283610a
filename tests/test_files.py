import pytest

from orpheus import cli
from orpheus.errors import DataFormatError, OutputExistsError
from orpheus.files import atomic_path, check_output, partial_path, read_partial, write_csv_atomic
from orpheus.parallel import batched, parallel_map


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


def test_check_output_refuses_overwrite(tmp_path):
    target = tmp_path / "x.csv"
    target.write_text("")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output(target, overwrite=False)
    assert check_output(target, overwrite=True) == target


def _square(x):
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_parallel_map_keeps_order(jobs):
    assert list(parallel_map(_square, list(range(50)), jobs=jobs, desc="t", quiet=True)) == [x * x for x in range(50)]


@pytest.mark.parametrize("max_pending", [1, 3])
def test_parallel_map_bounded_keeps_order(max_pending):
    got = list(parallel_map(_square, list(range(40)), jobs=2, desc="t", quiet=True, max_pending=max_pending))
    assert got == [x * x for x in range(40)]


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
