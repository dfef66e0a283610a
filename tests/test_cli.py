"""The `orpheus` command (orpheus.cli.main) and the entry points' shared plumbing: subcommands, help,
on-demand imports, and no TensorFlow/absl log lines or runpy warnings from a real command."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orpheus import cli
from tests.fixtures_commands import NOISE, clean_env

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orpheus", "msd", "tfrecords")
def available(command: cli.Command) -> bool:
    return importlib.util.find_spec(command.module.split(".")[0]) is not None and \
        importlib.util.find_spec(command.module) is not None


# ------------------------------------------------------------------------------------- front door
def test_front_door_help_lists_every_subcommand_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name, command in cli.COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(command.summary)}$", out, re.M), name
    assert "examples:" in out and "orpheus predict --mp3" in out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_subcommand_help_is_its_modules_help(name, capsys):
    command = cli.COMMANDS[name]
    if not available(command):
        pytest.skip(f"{command.module} is not in this checkout (written on another branch)")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: orpheus {name} ")
    assert "examples" in out or "example" in out.lower()
    assert cli._prog_override is None


def test_subcommand_runs_the_module_with_the_same_flags(tmp_path, capsys):
    """`orpheus pretrained list ...` and the command module's `main` are one command."""
    from orpheus.commands import pretrained as pretrained_command

    args = ["list", "--cache-dir", str(tmp_path), "--musicnn-dir", str(tmp_path / "none")]
    assert cli.main(["pretrained", *args]) == 0
    via_front_door = capsys.readouterr().out
    assert pretrained_command.main(args) == 0
    assert capsys.readouterr().out == via_front_door and "MSD_musicnn" in via_front_door


def test_bad_subcommand_and_missing_module_are_one_line_errors(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2 and "unknown subcommand 'no-such-command'" in capsys.readouterr().err
    monkeypatch.setitem(cli.COMMANDS, "ghost", cli.Command("msd.no_such_module", "a stage not installed"))
    assert cli.main(["ghost", "--help"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("orpheus: error: subcommand 'ghost' is not available")


def test_errors_of_a_subcommand_keep_its_one_line_form(tmp_path, capsys):
    assert cli.main(["predict", "--mp3", str(tmp_path / "absent.mp3")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("orpheus predict: error: ") and "absent.mp3" in err[-1]   # the subcommand's own name


def test_the_front_door_imports_no_stage():
    """Importing orpheus.cli (and parsing its help) loads no stage and not TensorFlow."""
    code = ("import sys, orpheus.cli as c; c.build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('msd', 'tfrecords', 'tensorflow')))")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -------------------------------------------------------------------------- entry points and logs
def entry_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if 'if __name__ == "__main__"' in p.read_text(encoding="utf-8"))


def test_one_way_in():
    """Besides `python -m orpheus`, only the design card's three files run as programs, and each starts its command
    through orpheus.cli.run_command, which silences TensorFlow before the command's module is imported."""
    scripts = {ROOT / "orpheus" / "training.py", ROOT / "orpheus" / "test_model.py",
               ROOT / "tfrecords" / "preprocessing.py"}
    assert set(entry_modules()) == scripts | {ROOT / "orpheus" / "__main__.py"}
    for path in scripts:
        main_block = path.read_text(encoding="utf-8").split('if __name__ == "__main__":')[1]
        assert "run_command(" in main_block, path
    assert not [p for p in (ROOT / "msd").rglob("*.py") if "quiet_tensorflow(" in p.read_text(encoding="utf-8")]


def test_no_sys_path_edits_and_no_script_folder_shadows_a_module():
    """Files run as scripts put their folder first on sys.path: no name there may hide a module of the
    standard library or of an installed distribution."""
    taken = set(sys.stdlib_module_names) | set(importlib.metadata.packages_distributions())
    for folder in ("orpheus", "tfrecords", "bench"):
        names = {p.stem for p in (ROOT / folder).iterdir()
                 if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith("__")}
        assert not names & taken, f"{folder}/ shadows {sorted(names & taken)}"
    for path in [*entry_modules(), *(ROOT / "bench").glob("*.py")]:
        assert "sys.path[0] =" not in path.read_text(encoding="utf-8"), path


def test_quiet_tensorflow_leaves_verbose_runs_alone(monkeypatch):
    for key in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel"):
        monkeypatch.delenv(key, raising=False)
    cli.quiet_tensorflow(["--mp3", "x", "--verbose"])
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    cli.quiet_tensorflow(["--mp3", "x"])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and os.environ["GLOG_minloglevel"] == "2"


@pytest.fixture(scope="module")
def generated_mp3(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tone.mp3"
    t = np.arange(16000 * 6) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32),
             16000, format="MP3")
    return path


def test_a_real_command_prints_no_tensorflow_log_lines(generated_mp3, tmp_path):
    """`orpheus predict` with the pretrained MSD_musicnn, from an unrelated folder: tags, and a clean stderr."""
    if importlib.util.find_spec("musicnn") is None:   # checkpoints: files read, code never imported
        pytest.skip("musicnn is not installed: pip install --no-deps musicnn==0.1.0")
    result = subprocess.run([sys.executable, "-m", "orpheus", "predict", "--mp3", str(generated_mp3), "--top", "3",
                             "--quiet"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "tone.mp3" in result.stdout and len(result.stdout.strip().splitlines()) == 4
    assert not NOISE.search(result.stderr), result.stderr


@pytest.mark.parametrize("argv", [
    ["orpheus/training.py", "--help"],                   # a file in the package folder, run from elsewhere
    ["-m", "orpheus", "synthetic", "--help"],            # a stage's subcommand
])
def test_entry_points_run_from_anywhere_without_noise(argv, tmp_path):
    args = [str(ROOT / argv[0]), *argv[1:]] if argv[0].endswith(".py") else argv
    result = subprocess.run([sys.executable, *args], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and not NOISE.search(result.stderr), result.stderr


def every_command_line() -> list[list[str]]:
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in entry_modules()]
    modules = [m.removesuffix(".__main__") for m in modules]
    files = [str(p.relative_to(ROOT)) for p in entry_modules() if p.parent.name in ("orpheus", "msd", "tfrecords")
             and p.name != "__main__.py"]
    subcommands = [["-m", "orpheus", name] for name in cli.COMMANDS]
    return [["-m", m] for m in modules] + [[f] for f in files] + subcommands


@pytest.mark.slow
@pytest.mark.parametrize("argv", every_command_line(), ids=" ".join)
def test_every_command_line_has_clean_help(argv, tmp_path):
    """Every `python -m X --help`, `python FILE --help` and `python -m orpheus NAME --help`: no runpy warning and
    no TensorFlow log line."""
    args = [str(ROOT / argv[0])] if argv[0].endswith(".py") else argv
    result = subprocess.run([sys.executable, *args, "--help"], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr and "found in sys.modules" not in result.stderr, result.stderr
    assert not NOISE.search(result.stderr), result.stderr


def test_log_lines_go_to_the_stderr_of_the_moment(capsys):
    """A command run in-process under another stderr (pytest's capture, redirect_stderr, a notebook) leaves no
    handler on that stream: once it is closed, later log lines still reach the stderr of their moment."""
    import contextlib
    import io
    import logging
    earlier = io.StringIO()
    with contextlib.redirect_stderr(earlier):
        cli.setup_logging()
        logging.getLogger("orpheus.test").info("first")
    earlier.close()
    logging.getLogger("orpheus.test").info("second")
    err = capsys.readouterr().err
    assert "INFO orpheus.test: second" in err and "Logging error" not in err, err


# A stand-in for the TensorFlow of a machine it cannot run on: on import it prints its start-up notices, then
# the fatal line TensorFlow prints on a CPU without AVX, then aborts the process as TensorFlow does there.
ABORTING_TENSORFLOW = '''
import os
os.write(2, b"I0000 00:00:1796170073.786879  8868 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"The TensorFlow library was compiled to use AVX instructions, but these aren't available on your "
            b"machine.\\n")
os.abort()
'''


def test_a_fatal_message_while_tensorflow_imports_reaches_the_terminal(tmp_path):
    """start-up lines are dropped, but the line that explains a crash during the import is never swallowed"""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(ABORTING_TENSORFLOW)
    code = "from orpheus.cli import quiet_tensorflow; quiet_tensorflow([]); import tensorflow"
    env = {**clean_env(), "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == -6                                   # SIGABRT, as TensorFlow's LOG(FATAL)
    assert "compiled to use AVX instructions, but these aren't available" in result.stderr
    assert "port.cc" not in result.stderr
