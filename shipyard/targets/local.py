"""The local target: an environment as a server process on loopback, serving the Bento as a pod
does (`python -m shipyard_serving.server`).

The server's PID and what it serves are recorded under the state folder, so any later shipyard
command (status, stop, verify) finds it without a daemon.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from shipyard.config import Environment
from shipyard.paths import state_dir
from shipyard.project import current_project
from shipyard.targets.base import Endpoint, Status, TargetError
from shipyard.targets.records import FileLock, FileRecords


@dataclass
class LocalState:
    """What a local deployment records: enough to find, check and stop it later."""

    environment: str
    pid: int
    port: int
    bento: str
    model: str
    started_at: str
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group: the server and every worker it forked."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ready(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Polls url/readyz: True once it answers 200, False when `alive()` turns false or time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        if http_ready(url, timeout=1.0):
            return True
        time.sleep(0.2)
    return False


if TYPE_CHECKING:
    from shipyard.harness.suites import HostRunner


class LocalTarget:
    """Runs an environment as a server process on loopback."""

    canary = None  # one server: nothing to split traffic with

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.dir = state_dir() / "local" / env.name
        self.state_file = self.dir / "server.json"
        self.records = FileRecords(state_dir() / "records" / env.name)
        self.lock = FileLock(state_dir() / "locks", env.name)

    def state(self) -> LocalState | None:
        try:
            return LocalState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def status(self) -> Status:
        st = self.state()
        if st is None:
            return Status(self.env.name, "local", "stopped")
        alive = _pid_alive(st.pid)
        state = "dead" if not alive else ("ready" if http_ready(st.url) else "starting")
        return Status(self.env.name, "local", state, st.bento, st.model, st.url, st.pid, st.started_at)

    def deploy(self, bento: str, model: str, progress: Callable[[str], None] = lambda _: None) -> LocalState:
        """Serves `bento`; a no-op when it already serves it, a replacement when it serves another."""
        current = self.state()
        if current and _pid_alive(current.pid):
            if current.bento == bento and http_ready(current.url):
                progress(f"{self.env.name} already serves {bento} at {current.url}")
                return current
            progress(f"stopping {current.bento} (pid {current.pid})")
            self.stop()
        port = self.env.local.port
        if port_in_use(port):
            raise TargetError(
                f"port {port} on 127.0.0.1 is in use by another process: stop it, or change "
                f"local.port in {self.env.name}'s environment.yaml"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        log_path = self.dir / "server.log"
        # How a pod serves the Bento too (k8s/base/deployment.yaml): shipyard_serving/server.py,
        # which hands over to `bentoml serve` for a service it cannot serve the same way.
        cmd = [
            sys.executable, "-m", "shipyard_serving.server", bento,
            "--host", "127.0.0.1", "--port", str(port),
        ]
        env = dict(os.environ, BENTOML_DO_NOT_TRACK="True", SHIPYARD_WORKERS=str(self.env.local.workers),
                   SHIPYARD_DEADLINE_MS=f"{self.env.deadline_ms:g}", BENTOML_HOME=str(self._bentoml_home(bento)))
        with open(log_path, "ab") as log:
            # A session of its own, so stop() can end bentoml's workers with it.
            proc = subprocess.Popen(
                cmd, cwd=current_project().root, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        st = LocalState(
            self.env.name, proc.pid, port, bento, model,
            datetime.now(timezone.utc).isoformat(timespec="seconds"), str(log_path),
        )
        self.state_file.write_text(json.dumps(asdict(st), indent=2))
        progress(f"started the server for {bento} (pid {proc.pid}), waiting for {st.url}/readyz")
        if wait_until_ready(st.url, self.env.local.ready_timeout_s, alive=lambda: proc.poll() is None):
            return st
        if proc.poll() is not None:
            self.state_file.unlink(missing_ok=True)
            raise TargetError(f"the server exited with code {proc.returncode} before it was ready:\n{_tail(log_path)}")
        self.stop()
        raise TargetError(
            f"the server was not ready within {self.env.local.ready_timeout_s:g}s "
            f"(local.ready_timeout_s):\n{_tail(log_path)}"
        )

    def _bentoml_home(self, bento: str) -> Path:
        """A BentoML home of this environment's own: the store's Bentos, and a model store holding
        exactly the models `bento` packs, each as its name's `latest`.

        Why its own: a `bentoml serve` (what the server hands over to for a service it cannot
        serve itself) empties <BENTOML_HOME>/prometheus_multiproc_dir when it
        starts, so servers sharing one home (staging and production) would erase each other's
        metrics. Why only the packed models: a service that loads `name:latest` must get the
        version its Bento was built with, as it does in the image, not one trained since."""
        import bentoml

        shared = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")  # BentoML's own default
        home = self.dir / "bentoml-home"
        home.mkdir(parents=True, exist_ok=True)
        (shared / "bentos").mkdir(parents=True, exist_ok=True)
        if not (home / "bentos").is_symlink():
            (home / "bentos").symlink_to(shared / "bentos", target_is_directory=True)
        models = home / "models"
        if models.is_symlink():
            models.unlink()
        if models.exists():
            import shutil

            shutil.rmtree(models)
        try:
            packed = bentoml.get(bento).info.all_models
        except (bentoml.exceptions.NotFound, ValueError):
            # Not a Bento but a service's import path (module:Class, served from source): it sees the store.
            models.symlink_to(shared / "models", target_is_directory=True)
            return home
        for info in packed:
            name, version = str(info.tag).split(":")
            (models / name).mkdir(parents=True, exist_ok=True)
            (models / name / version).symlink_to(shared / "models" / name / version, target_is_directory=True)
            (models / name / "latest").write_text(version)
        return home

    def scale_watch(self) -> "nullcontext[None]":
        """A local server does not scale: nothing to watch."""
        return nullcontext()

    @contextmanager
    def endpoint(self) -> Iterator[Endpoint]:
        """The server's loopback URL, once it answers ready."""
        st = self.status()
        if st.state != "ready":
            raise TargetError(f"{self.env.name} is {st.state} on the local target: run "
                              f"`shipyard deploy {self.env.name} --target local`")
        yield Endpoint(st.url, {"bento": st.bento, "model_version": st.model})

    @contextmanager
    def suite_runner(self) -> Iterator["HostRunner"]:
        """Suites from this machine against the local server."""
        from shipyard.harness.suites import HostRunner

        with self.endpoint() as endpoint:
            yield HostRunner(endpoint.url, endpoint.subject)

    def subject(self) -> str:
        """What runs here (a Bento tag), or "" when nothing does."""
        st = self.status()
        return st.bento if st.state == "ready" else ""

    def roll_to(self, subject: str, progress: Callable[[str], None] = lambda _: None) -> None:
        from shipyard.bento import resolve_bento

        bento = resolve_bento(subject)
        self.deploy(bento.tag, bento.model_tag, progress)

    def stop(self, grace_s: float = 15.0) -> bool:
        """SIGTERM to the server's process group, SIGKILL after the grace period. True if it ran."""
        st = self.state()
        if st is None:
            return False
        was_running = bool(_group_members(st.pid))
        if was_running:
            try:
                os.killpg(st.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace_s
            while _group_members(st.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_members(st.pid):
                try:
                    os.killpg(st.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                while _group_members(st.pid) and time.monotonic() < deadline + 5:
                    time.sleep(0.1)
        self.state_file.unlink(missing_ok=True)
        return was_running


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

