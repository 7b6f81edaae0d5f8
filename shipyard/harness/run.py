"""`shipyard verify`: run the suites against an environment, judge its gates, store the verdict.

Smoke runs first and a failed smoke stops the run (nothing else can be trusted); every other
suite runs even when an earlier one failed, so the verdict shows everything that is wrong.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from shipyard.config import Environment
from shipyard.harness import gates as gate_eval
from shipyard.harness import report, verdict as verdicts
from shipyard.harness.suites import ORDER, SuiteResult, run_suite
from shipyard.paths import state_dir


class VerifyError(Exception):
    """The environment cannot be verified at all (not running, unknown suite): exit 1 or 2."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    subject: dict[str, str]
    target: object  # LocalTarget | KubernetesTarget: where the verdict is recorded


@contextmanager
def endpoint(env: Environment, target_kind: str | None) -> Iterator[Endpoint]:
    """Where the suites send traffic: the local server, or the Service through a port-forward."""
    from shipyard.targets import KubernetesTarget, LocalTarget, target_for

    target = target_for(env, target_kind)
    if isinstance(target, LocalTarget):
        st = target.status()
        if st.state != "ready":
            raise VerifyError(f"{env.name} is {st.state} on the local target: run `shipyard deploy {env.name} --target local`")
        yield Endpoint(st.url, {"bento": st.bento, "model_version": st.model, **_data_hash(st.model)}, target)
        return
    assert isinstance(target, KubernetesTarget)
    st = target.status()
    if st.state != "ready":
        raise VerifyError(f"{env.name} is {st.state} on Kubernetes"
                          + (f" ({'; '.join(st.problems)})" if st.problems else "")
                          + f": fix it and run `shipyard deploy {env.name} --target kubernetes`")
    import socket

    from shipyard import kubectl
    from shipyard.targets import port_in_use

    with socket.socket() as sock:  # a free loopback port for the forward
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forward = subprocess.Popen([kubectl.kubectl_path(), "-n", target.namespace, "port-forward", "service/fraud-scorer",
                                f"{port}:80", "--address", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not port_in_use(port):
            if forward.poll() is not None or time.monotonic() > deadline:
                raise VerifyError(f"port-forward to {target.namespace}/fraud-scorer failed: "
                                  f"{forward.stderr.read().decode()[-300:] if forward.stderr else ''}")
            time.sleep(0.2)
        yield Endpoint(f"http://127.0.0.1:{port}",
                       {"image": st.image, "digest": st.image.rsplit("@", 1)[-1], "bento": st.bento,
                        "model_version": st.model, **_data_hash(st.model)}, target)
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def _data_hash(model_tag: str) -> dict[str, str]:
    """The training-data hash recorded with the model, when this machine's store has it."""
    try:
        import bentoml

        return {"training_data_hash": str(bentoml.models.get(model_tag).info.metadata["training_data_hash"])}
    except Exception:  # noqa: BLE001 - a model built elsewhere is still verifiable
        return {}


def verify(env: Environment, requested: list[str] | None = None, target_kind: str | None = None,
           overrides: dict[str, dict] | None = None, progress: Callable[[str], None] = lambda _: None) -> tuple[dict, Path]:
    """Runs the suites, evaluates the gates, stores verdict + report; returns (verdict, its path)."""
    suites = [s for s in ORDER if s in (requested or ORDER)]
    started = verdicts.now()
    results: list[SuiteResult] = []
    with endpoint(env, target_kind) as ep, tempfile.TemporaryDirectory(prefix="shipyard-verify-") as tmp:
        context = {"SHIPYARD_EXPECTED_MODEL": ep.subject.get("model_version", ""),
                   "SHIPYARD_DEADLINE_MS": str(env.deadline_ms)}
        if env.data_sample:
            # Relative to the state folder, where `shipyard train` writes the sample; or absolute.
            context["SHIPYARD_DATA_SAMPLE"] = str((state_dir() / env.data_sample).resolve())
        for suite in suites:
            progress(f"{suite}: running against {ep.url}")
            configured = {**env.suites.get(suite, {}), **(overrides or {}).get(suite, {})}
            result = run_suite(suite, ep.url, configured, context, Path(tmp))
            results.append(result)
            progress(f"{suite}: {result.status} in {result.seconds:.1f}s")
            if suite == "smoke" and result.status != "passed":
                progress("smoke failed: stopping here, nothing else can be trusted")
                break
    measured = {r.name: r.metrics for r in results}
    judged = gate_eval.evaluate(env.gates, measured, {r.name for r in results if r.status != "error"}, suites)
    document = verdicts.build(env.name, target_kind or env.target, ep.subject, results, judged, started, suites)
    path = verdicts.store(document)
    # The machine-readable copy promotion reads: beside the release it may allow (a ConfigMap in
    # the namespace on Kubernetes, the state folder locally).
    document["record"] = ep.target.put_record("verdict", path.stem.lower(), document)
    path.with_suffix(".html").write_text(report.render_html(document, results))
    (path.parent / "latest.html").write_text(report.render_html(document, results))
    return document, path
