"""The exception hierarchy: every expected failure is an `OrpheusError`.

Command-line entry points catch `OrpheusError` and print its message as one line on stderr with
exit status 1 (see `orpheus.cli.run_main`), so messages must name the file at fault and the fix.
Anything else escaping is a bug and keeps its traceback.
"""


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
