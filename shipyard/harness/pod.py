"""A staged suite inside the cluster: what the runner image's pods run (`python -m shipyard.harness.pod`).

`shipyard verify --target kubernetes` starts them in the environment's namespace
(shipyard.targets.suite_pods): a runner pod runs the suite exactly as `shipyard verify` runs it
from a laptop (harness.suites.run_suite: pytest with its JUnit XML, locust with its CSV), against
the Service by its cluster DNS name; a locust suite's runner is the locust master, and `worker`
pods are its workers. The runner prints the suite's result as JSON on its last log line, after
RESULT_PREFIX, where the host reads it back through the API and judges the gates.

What to run comes in SHIPYARD_SUITE_POD (JSON): suite, url, settings, context, workers, master.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

RESULT_PREFIX = "shipyard-suite-result: "
SPEC_VARIABLE = "SHIPYARD_SUITE_POD"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard.harness.pod", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["run", "worker"],
                        help="run: the suite (a locust suite's master); worker: one locust worker of it")
    args = parser.parse_args(argv)
    try:
        spec = json.loads(os.environ[SPEC_VARIABLE])
    except (KeyError, ValueError) as exc:
        parser.error(f"{SPEC_VARIABLE} must hold the suite's JSON spec ({exc})")
    from shipyard.harness.suites import locust_worker_command, run_suite, suite_environment
    from shipyard.project import current_project

    project = current_project()
    if args.role == "worker":
        command = locust_worker_command(project, spec["suite"], spec["master"])
        os.execve(command[0], command, suite_environment(spec["suite"], spec["url"], spec["settings"], spec["context"]))
    with tempfile.TemporaryDirectory(prefix="shipyard-suite-") as workdir:
        result = run_suite(project, spec["suite"], spec["url"], spec["settings"], spec["context"], Path(workdir),
                           locust_workers=int(spec.get("workers", 0)))
    print(RESULT_PREFIX + json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
