"""Running commands as a user does: the environment a user has, and the log lines that must never reach their
terminal without --verbose."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What must never reach a user's terminal without --verbose.
NOISE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|absl::InitializeLog|oneDNN|RuntimeWarning"
                   r"|found in sys\.modules|Sharding callback", re.M)


def clean_env() -> dict[str, str]:
    """This environment without the test session's own TensorFlow log settings: what a user has."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")}
    env["PYTHONPATH"] = str(ROOT)
    return env
