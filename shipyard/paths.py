"""Where shipyard keeps its state, and the process environment every step runs under.

Everything a run produces (verdicts, records, local servers' logs and PIDs, and the project's data)
lives under the project's state folder (shipyard.yaml `state`, default `.shipyard/`), so
`rm -rf .shipyard` resets it. BentoML's stores stay where BentoML keeps them unless shipyard.yaml
puts them in the state folder too (`bentoml_home`); an explicit BENTOML_HOME always wins.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from shipyard.project import ProjectError, current_project


def state_dir() -> Path:
    """`SHIPYARD_STATE`, or the project's state folder."""
    explicit = os.environ.get("SHIPYARD_STATE")
    return Path(explicit).resolve() if explicit else current_project().path(current_project().state)


def data_dir() -> Path:
    return state_dir() / "data"


def cache_dir() -> Path:
    """Downloads and tools kept across projects and clean clones (never in a repository):
    SHIPYARD_CACHE, else $XDG_CACHE_HOME/shipyard or ~/.cache/shipyard, as the scripts use."""
    explicit = os.environ.get("SHIPYARD_CACHE")
    return Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shipyard"


@contextlib.contextmanager
def cache_entry_lock(entry: Path) -> Iterator[None]:
    """Held while one process fills a cache entry (a tool's venv, a folder of wheels): two
    shipyard runs at once on a cold cache (make test's workers, a user's two terminals) would
    otherwise write into, or remove, the same folder. Released by the kernel if the holder dies."""
    import fcntl

    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f".{entry.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def filled_once(entry: Path, fill: Callable[[Path], None]) -> Path:
    """`entry`, filled by fill(entry) the first time any process asks for it: under
    cache_entry_lock, and marked complete (`.done`, written last) only once fill returned, so an
    entry left half-filled by a crash or a kill is filled again, never used."""
    done = entry / ".done"
    if not done.exists():
        with cache_entry_lock(entry):
            if not done.exists():  # else filled by whoever held the lock before us
                fill(entry)
                done.touch()
    return entry


def environments_dir() -> Path:
    explicit = os.environ.get("SHIPYARD_ENVIRONMENTS")
    return Path(explicit).resolve() if explicit else current_project().path(current_project().environments)


def configure_environment() -> None:
    """Sets the variables BentoML reads at import time; call before importing bentoml. Hooks and
    servers inherit them, so everything a command starts shares its state folder and stores.

    Outside a project (`shipyard init`, `--help`) there is no state folder yet: nothing is set."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    try:
        state, project = state_dir(), current_project()
    except ProjectError:
        return
    os.environ.setdefault("SHIPYARD_STATE", str(state))
    if project.bentoml_home:
        os.environ.setdefault("BENTOML_HOME", str(state / project.bentoml_home))
