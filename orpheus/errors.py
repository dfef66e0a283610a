"""The exception hierarchy (every expected failure is an `OrpheusError`) and the exit statuses.

Command-line entry points catch `OrpheusError` and print its message as one line on stderr with
exit status 1 (see `orpheus.cli.run_main`), so messages must name the file at fault and the fix.
Anything else escaping is a bug and keeps its traceback.

Exit statuses, the same for every command (docs/outputs.md, "Exit statuses"):
    0    done: every input was processed as asked (what a cleaning rule drops is processed: it is
         listed in that stage's report of dropped or skipped tracks)
    1    error: nothing was done, or an output was refused; one line `orpheus NAME: error: ...`
    2    the command line itself is wrong (argparse's usage error)
    3    partly done: some inputs were skipped or failed (each reported), the others done; the last
         line on stderr gives the counts; a rerun retries only what is left
    130  interrupted (Ctrl-C); rerun the same command to resume
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


class OrpheusError(Exception):
    """Root of all expected Orpheus failures."""


class ConfigError(OrpheusError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class DataFormatError(OrpheusError):
    """An input file exists but is not in the expected format (HDF5 layout, SQLite schema, CSV columns...)."""


class AudioDecodeError(DataFormatError):
    """An audio file could not be decoded (empty, corrupt, unsupported)."""


class MissingInputError(OrpheusError):
    """A required input file or folder does not exist."""


class OutputExistsError(OrpheusError):
    """An output already exists and `--overwrite` was not given."""


class OutputWriteError(OrpheusError):
    """An output folder cannot take the output: the disk is full, the folder read-only or not ours."""


class MissingDependencyError(OrpheusError):
    """An optional package or system library is not installed; the message gives the install command."""


class AudioDeviceError(OrpheusError):
    """No usable audio input device (microphone recording)."""


@dataclass(frozen=True)
class Tally:
    """What a command did with its inputs: a command returns one, and `orpheus.cli.run_main` turns it into
    the exit status and, unless every input was done, the last line on stderr.

    total: inputs the command was asked to process (files already done by an earlier run included).
    failed: inputs that failed (could not be decoded, read or written).
    skipped: inputs left alone for a reason of theirs (a read-only file, a read-only folder).
    noun: what an input is, plural ("files").
    """
    total: int
    failed: int = 0
    skipped: int = 0
    noun: str = "files"

    @property
    def status(self) -> int:
        """`EXIT_OK` when nothing failed or was skipped, `EXIT_ERROR` when nothing was done, else `EXIT_PARTIAL`."""
        if not self.failed and not self.skipped:
            return EXIT_OK
        return EXIT_ERROR if self.failed + self.skipped >= self.total else EXIT_PARTIAL

    def line(self) -> str:
        """'2 of 10 files failed, 1 skipped; 7 done' (the counts that are not zero)."""
        parts = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.skipped, "skipped")) if n]
        done = self.total - self.failed - self.skipped
        return f"{' and '.join(parts).replace(' ', f' of {self.total} {self.noun} ', 1)}; {done} done"
