"""Base images built here, from Debian packages, for projects whose shipyard.yaml says
`image: {base: debian}`: no registry pull, no network inside the image build.

`shipyard build` points the Bento at such a base (`shipyard-base-<repository>:py3.11`) and at
the containerize template beside this module; `shipyard image build` builds the base first with
`build-base` from the Bento's own Python requirements (or the project's lock file), plus BentoML
and uv at the versions shipyard runs with.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from shipyard.project import Project

HERE = Path(__file__).resolve().parent
BUILD_BASE = HERE / "build-base"
TEMPLATE = HERE / "Dockerfile.j2"
TEMPLATE_IN_CONTEXT = "shipyard_dockerfile.j2"
UV = "uv==0.13.9"  # what BentoML's containerize template needs (>= 0.13.4) to install offline


def base_name(project: Project, serving: bool = False) -> str:
    """The full base (the Bento's whole requirements), or with serving the serving lock's base."""
    return f"shipyard-base-{project.image.repository.replace('/', '-')}{'-serving' if serving else ''}"


def docker_options(project: Project, ctx: Path) -> dict[str, str]:
    """The bentofile's docker options for a Debian base: its name and the template, copied into the context."""
    (ctx / TEMPLATE_IN_CONTEXT).write_text(TEMPLATE.read_text().replace("{{ shipyard_uv }}", UV))
    return {"base_image": f"{base_name(project)}:py3.11", "dockerfile_template": TEMPLATE_IN_CONTEXT}


def requirements(project: Project, bento_path: str) -> str:
    """What the base holds: the project's lock file, or the Bento's requirements with BentoML and uv."""
    if project.image.lock:
        return project.path(project.image.lock).read_text()
    import bentoml

    import re

    pins = {"bentoml": f"bentoml=={bentoml.__version__}", "uv": UV}
    bento_requirements = Path(bento_path) / "env" / "python" / "requirements.txt"
    if bento_requirements.is_file():
        for line in bento_requirements.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                pins[re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-")] = line
    return "\n".join(sorted(pins.values())) + "\n"


def build_command(project: Project, bento_path: str, serving: bool = False) -> tuple[list[str], Path]:
    """The build-base command line and the requirements file it reads (the caller removes it).

    serving: the base of the serving image, from image.serving_lock exactly (no resolution)."""
    handle = tempfile.NamedTemporaryFile("w", prefix="shipyard-base-", suffix=".txt", delete=False)
    with handle:
        handle.write(project.path(project.image.serving_lock).read_text() if serving
                     else requirements(project, bento_path))
    return (["bash", str(BUILD_BASE), base_name(project, serving), handle.name, *(["--serving"] if serving else [])],
            Path(handle.name))
