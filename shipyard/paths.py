"""Where shipyard keeps its state, and the process environment every step runs under.

Everything a run produces (data, BentoML's model and Bento stores, local servers' logs and PIDs)
lives under one state folder so a checkout is self-contained and `rm -rf .shipyard` resets it.
Users who already have a BentoML home keep it: BENTOML_HOME is only set when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """`SHIPYARD_STATE`, or `.shipyard/` in the project."""
    return Path(os.environ.get("SHIPYARD_STATE", PROJECT_ROOT / ".shipyard")).resolve()


def data_dir() -> Path:
    return state_dir() / "data"


def environments_dir() -> Path:
    return Path(os.environ.get("SHIPYARD_ENVIRONMENTS", PROJECT_ROOT / "environments")).resolve()


def configure_environment() -> None:
    """Sets the variables BentoML reads at import time; call before importing bentoml."""
    os.environ.setdefault("BENTOML_HOME", str(state_dir() / "bentoml"))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
