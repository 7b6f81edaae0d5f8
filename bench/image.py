"""Image figures from one run: size and what takes it, cold start to /readyz, rebuild time.

- size: the serving image's size and its largest layers, the largest folders in its venv, and
  the jobs image's size (image.serving_lock);
- cold start: `docker run` of the serving image (its default command, shipyard's server;
  read-only root, non-root) to the first /readyz 200, median of 5; and where that time goes, each
  a `docker run --rm` of the same image to its exit, median of 3: the container and an interpreter
  (`python -c pass`), + the server's imports, + the Bento and its model loaded (`--check`); the
  rest of the cold start is binding, the app, and the first /readyz;
- rebuild: `shipyard build` + `shipyard image build` after a service-code-only change (a comment
  appended to a copy of the service is not possible without touching the tree, so the benchmark
  rebuilds the Bento, which changes only its code layer), compared with a no-change rebuild.

usage: python -m bench.image   (needs scripts/image/up and a built image: shipyard image build)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time

import httpx

from shipyard.paths import configure_environment

configure_environment()

from bench.run import free_port  # noqa: E402


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def cold_start_s(reference: str) -> float:
    port = free_port()
    start = time.perf_counter()
    cid = sh("docker", "run", "-d", "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:3000", reference).strip()
    try:
        deadline = start + 120
        while time.perf_counter() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("container never became ready")
    finally:
        sh("docker", "rm", "-f", cid)


PHASES = {  # docker run --rm of the serving image, each doing a little more than the one before
    "container_and_interpreter": ["-c", "pass"],
    "imports": ["-c", "import shipyard_serving.server, uvicorn, bentoml"],
    "bento_and_model_loaded": ["-m", "shipyard_serving.server", "--check", "/home/bentoml/bento"],
}


def phases_s(reference: str, runs: int = 3) -> dict[str, float]:
    """Median seconds to the exit of each PHASES run (cumulative: each includes the one before)."""
    out = {}
    for name, args in PHASES.items():
        cmd = ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none",
               "-w", "/home/bentoml/bento/src", "--entrypoint", "python", reference, *args]
        out[name] = round(statistics.median(timed(*cmd) for _ in range(runs)), 2)
    return out


def timed(*cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    from shipyard.image import list_images

    record = list_images()[-1]
    layers = [line.split("\t") for line in sh("docker", "history", "--no-trunc", "--format",
                                               "{{.Size}}\t{{.CreatedBy}}", record.tag).splitlines()]
    venv = sh("docker", "run", "--rm", "--entrypoint", "sh", record.tag, "-c",
              "du -sm /opt/venv/lib/python3.11/site-packages/* /opt/venv/bin/uv /usr/lib /usr/bin | sort -n | tail -8")
    starts = [cold_start_s(record.reference) for _ in range(5)]
    phases = phases_s(record.reference)
    shipyard = ".venv/bin/shipyard"
    rebuild = timed(shipyard, "build") + timed(shipyard, "image", "build")
    jobs_size = (int(sh("docker", "image", "inspect", "-f", "{{.Size}}", record.jobs_reference).strip())
                 if record.jobs_reference else None)
    print(json.dumps({
        "image": record.reference,
        "size_mb": round(record.size_bytes / 1e6),
        "jobs_image": record.jobs_reference or "(the same image)",
        "jobs_image_size_mb": round(jobs_size / 1e6) if jobs_size else None,
        "layers": [[size, created[:90]] for size, created in layers if size not in ("0B",)][:8],
        "largest_paths_mb": venv.strip().splitlines(),
        "cold_start_s": {"median": round(statistics.median(starts), 2), "all": [round(s, 2) for s in starts]},
        "cold_start_phases_s": phases,
        "rebuild_after_code_change_s": round(rebuild, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
