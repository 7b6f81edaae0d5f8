"""Where shipyard keeps its state, and the process environment every step runs under.

Everything a run produces (data, BentoML's model and Bento stores, local servers' logs and PIDs)
lives under the project's state folder (shipyard.yaml `state`, default `.shipyard/`) so a checkout
is self-contained and `rm -rf .shipyard` resets it. Users who already have a BentoML home keep it:
BENTOML_HOME is only set when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

from shipyard.project import ProjectError, current_project


def state_dir() -> Path:
    """`SHIPYARD_STATE`, or the project's state folder."""
    explicit = os.environ.get("SHIPYARD_STATE")
    return Path(explicit).resolve() if explicit else current_project().path(current_project().state)


def data_dir() -> Path:
    return state_dir() / "data"


def environments_dir() -> Path:
    explicit = os.environ.get("SHIPYARD_ENVIRONMENTS")
    return Path(explicit).resolve() if explicit else current_project().path(current_project().environments)


def configure_environment() -> None:
    """Sets the variables BentoML reads at import time; call before importing bentoml.

    Outside a project (`shipyard init`, `--help`) there is no state folder yet: nothing is set."""
    try:
        home = state_dir() / "bentoml"
    except ProjectError:
        return
    os.environ.setdefault("SHIPYARD_STATE", str(state_dir()))
    os.environ.setdefault("BENTOML_HOME", str(home))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
