"""The cache's fill lock, without servers: a real kernel flock held by one process and tried by
another (no timing: the second asks without waiting and is told no)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shipyard.paths import cache_entry_lock

TRY = """
import fcntl, sys
with open(sys.argv[1], "w") as handle:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(3)
"""


def _another_process_may_fill(entry: Path) -> bool:
    result = subprocess.run([sys.executable, "-c", TRY, str(entry.parent / f".{entry.name}.lock")], timeout=60)
    assert result.returncode in (0, 3), result
    return result.returncode == 0


def test_one_process_at_a_time_fills_a_cache_entry(tmp_path):
    entry = tmp_path / "tools" / "checkov-1"
    with cache_entry_lock(entry):
        assert entry.parent.is_dir()
        assert not _another_process_may_fill(entry)
    assert _another_process_may_fill(entry)


def test_entries_do_not_block_each_other(tmp_path):
    with cache_entry_lock(tmp_path / "runner-wheels" / "a"):
        assert _another_process_may_fill(tmp_path / "runner-wheels" / "b")


def test_an_entry_is_filled_once_and_a_failed_fill_is_done_again(tmp_path):
    from shipyard.paths import filled_once

    calls = []

    def failing(entry):
        calls.append("failed")
        entry.mkdir()
        raise OSError("network down")

    entry = tmp_path / "runner-wheels" / "abc"
    try:
        filled_once(entry, failing)
    except OSError:
        pass
    filled_once(entry, lambda e: calls.append("filled"))
    filled_once(entry, lambda e: calls.append("again"))
    assert calls == ["failed", "filled"] and (entry / ".done").exists()
