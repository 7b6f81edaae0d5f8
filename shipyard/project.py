"""shipyard.yaml: what the toolkit cannot guess about a BentoML project, validated.

The file is found by walking up from the working directory, as bentoml finds bentofile.yaml and
kustomize a kustomization.yaml, so every shipyard command works from anywhere inside a project.
Every other fact comes from the project's own files: the Bento's name and build context from the
bentofile (its `service` and `include`), the APIs from the served OpenAPI document.
"""

from __future__ import annotations

import os
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

PROJECT_FILE = "shipyard.yaml"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# The suites the toolkit brings for any Bento; a project adds its own under `suites:`.
BUILTIN_SUITES = ("smoke", "contract", "load", "stress")
_CLOSED = ConfigDict(extra="forbid")


class ProjectError(Exception):
    """No shipyard.yaml, or an invalid one: the message names the file, the key and the rule."""


Command = Annotated[list[str], Field(min_length=1)]


def _command(value: object) -> object:
    """A command as a list of words, or one string split like a shell would (no shell runs it)."""
    return shlex.split(value) if isinstance(value, str) else value


class Image(BaseModel):
    model_config = _CLOSED
    # Pushed as $SHIPYARD_REGISTRY/<repository>:<bento version>; deployed by digest only.
    repository: Annotated[str, Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")]
    # debian: the Bento's base image is built here from Debian packages (shipyard/imagebase): no
    # registry pull, no network inside the image build. Unset: the bentofile's own docker options.
    base: Literal["debian"] | None = None
    # With base debian: a complete pinned list of the image's Python packages (else the Bento's
    # own requirements with BentoML and uv, and what they need, resolved when the base is built).
    lock: str | None = None
    # With base debian: the serving image's packages, exactly (installed without resolving what
    # they need): only what the server imports. The Bento is then built twice: on this base as
    # the image pods serve with (<repository>), and on the full base as the jobs image
    # (<repository>-jobs) that batch Jobs, stream workers and hooks run; both pinned by digest.
    serving_lock: str | None = None

    @model_validator(mode="after")
    def _serving_lock_needs_debian(self) -> "Image":
        if self.serving_lock and self.base != "debian":
            raise ValueError("serving_lock needs base: debian (shipyard builds that base; another base is yours)")
        return self

    @property
    def jobs_repository(self) -> str:
        return f"{self.repository}-jobs"

    @property
    def runner_repository(self) -> str:
        return f"{self.repository}-runner"


class Companion(BaseModel):
    """An image the release needs beside the Bento's (the example's stream broker). Its build
    command prints the pushed reference (name@sha256:...) on its last line; deploy pins it."""

    model_config = _CLOSED
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    image: str  # the image name as the Kubernetes base writes it
    build: Command

    _split = field_validator("build", mode="before")(_command)


class Kubernetes(BaseModel):
    model_config = _CLOSED
    base: str = "k8s/base"
    image: str  # the image name of the Bento's container as the base writes it; pinned by digest at deploy
    workload: Annotated[str, Field(pattern=NAME_PATTERN)]  # the Deployment serving the Bento
    service: Annotated[str, Field(pattern=NAME_PATTERN)]  # its Service: what suites and rollouts watch
    port: Annotated[int, Field(ge=1, le=65535)] = 80
    scan_exceptions: str | None = None  # checkov checks skipped on purpose, each with its reason
    # The image name the base gives batch Jobs, stream workers and other non-serving containers:
    # pinned to the jobs image (image.serving_lock), or to the serving image when there is one image.
    jobs_image: str | None = None
    batch_cronjob: Annotated[str | None, Field(pattern=NAME_PATTERN)] = None  # template of batch Jobs


class Traffic(BaseModel):
    """What smoke, load and stress send: example bodies per route, and how often each route is
    called under load."""

    model_config = _CLOSED
    samples: str | None = None  # JSON: {"/route": [body, ...]}; default: the OpenAPI document's examples
    weights: dict[str, Annotated[float, Field(gt=0)]] = {}  # default: every sampled route, equally


class SuiteSpec(BaseModel):
    """A suite the project brings. pytest: a folder of tests (values to gate reach the verdict
    through `record_testsuite_property`); locust: a locustfile; schemathesis: every check against
    the served OpenAPI document, like the built-in contract suite, with the suite's own settings
    (`examples`, `seed` in environment.yaml); command: exit 0 passes, and a JSON object on its last
    output line gives the measured values."""

    model_config = _CLOSED
    runner: Literal["pytest", "locust", "schemathesis", "command"]
    path: str | None = None
    command: Command | None = None

    _split = field_validator("command", mode="before")(_command)

    @model_validator(mode="after")
    def _what_to_run(self) -> "SuiteSpec":
        if self.runner == "command" and not self.command:
            raise ValueError("runner command needs `command`")
        if self.runner in ("pytest", "locust") and not self.path:
            raise ValueError(f"runner {self.runner} needs `path`")
        if self.runner == "schemathesis" and (self.path or self.command):
            raise ValueError("runner schemathesis takes no path or command: it reads the served OpenAPI document")
        return self


class Project(BaseModel):
    """One BentoML project. Only `image` and `kubernetes` are required; the rest has defaults."""

    model_config = _CLOSED
    bentofile: str = "bentofile.yaml"
    environments: str = "environments"
    state: str = ".shipyard"
    # BentoML's home (model and Bento stores), relative to the state folder; unset: BentoML's own
    # default (BENTOML_HOME, else ~/bentoml), where `bentoml build` and the project's code find them.
    bentoml_home: str | None = None
    image: Image
    kubernetes: Kubernetes
    traffic: Traffic = Traffic()
    # Project commands run from the project root (`shipyard <name> [args]`). `batch` is also the
    # entry point each shard of a batch Job runs, with the shard protocol of shipyard/targets/batch.py:
    # `<batch> INPUT OUTPUT --rejects FILE --first-row K --summary FILE`.
    hooks: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Command] = {}
    companions: list[Companion] = []
    suites: dict[Annotated[str, Field(pattern=NAME_PATTERN)], SuiteSpec] = {}

    _root: Path = PrivateAttr(default=Path("."))

    @field_validator("hooks", mode="before")
    @classmethod
    def _split_hooks(cls, value: object) -> object:
        return {k: _command(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("suites")
    @classmethod
    def _not_builtin(cls, value: dict[str, SuiteSpec]) -> dict[str, SuiteSpec]:
        clash = sorted(set(value) & set(BUILTIN_SUITES))
        if clash:
            raise ValueError(f"{', '.join(clash)} are built-in suites; name the project's own suite differently")
        return value

    @property
    def root(self) -> Path:
        return self._root

    def path(self, relative: str) -> Path:
        """A path from shipyard.yaml, relative to the project root (or absolute)."""
        return (self._root / relative).resolve()

    @property
    def suite_names(self) -> tuple[str, ...]:
        """Every suite in run order: smoke first, the project's own, then contract, load, stress."""
        return ("smoke", *self.suites, "contract", "load", "stress")

    def bentofile_data(self) -> dict:
        path = self.path(self.bentofile)
        try:
            return read_build_options(path)
        except OSError as exc:
            raise ProjectError(f"{self.path(PROJECT_FILE)}: bentofile: cannot read {path}: {exc.strerror}") from None

    @property
    def bento_name(self) -> str:
        """The Bento's name by BentoML's own rule, before anything is built: the bentofile's
        `name`, else the service's name in BentoML's snake case (`TicketRouter` -> `ticket_router`).
        A service may name itself (`@bentoml.service(name=...)`), which only importing it tells:
        after a build, shipyard/bento.py uses the name BentoML gave the Bento instead."""
        return bento_name_of(self.bentofile_data())


# Where BentoML reads a project's build options, in its order (bentoml._internal.bento.bento).
BUILD_FILES = ("bentofile.yaml", "pyproject.toml")


def read_build_options(path: Path) -> dict:
    """A project's Bento build options: a bentofile (YAML), or a pyproject.toml's
    `[tool.bentoml.build]` table, which BentoML reads the same way. ProjectError when there is no
    `service`; OSError when the file cannot be read."""
    text = path.read_text()
    if path.name == "pyproject.toml":
        import tomllib

        try:
            data = tomllib.loads(text).get("tool", {}).get("bentoml", {}).get("build")
        except tomllib.TOMLDecodeError as exc:
            raise ProjectError(f"{path}: {exc}") from None
        where = f"{path}: [tool.bentoml.build]"
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProjectError(f"{path}: not YAML: {exc}") from None
        where = f"{path}:"
    if not isinstance(data, dict) or not data.get("service"):
        raise ProjectError(f"{where} needs `service` (module:Class, e.g. service = \"service:MyService\"): "
                           "shipyard builds the service the build options name")
    return data


def find_build_file(folder: Path) -> str | None:
    """The build-options file BentoML would use in `folder`: bentofile.yaml, else a pyproject.toml
    with a `[tool.bentoml.build]` table."""
    for name in BUILD_FILES:
        path = folder / name
        if path.is_file() and (name != "pyproject.toml" or "[tool.bentoml.build]" in path.read_text()):
            return name
    return None


def bento_name_of(bentofile: dict) -> str:
    """BentoML's rule for a Bento's name from its bentofile: its `name`, else the service's."""
    if bentofile.get("name"):
        return str(bentofile["name"])
    return bentoml_snake_case(str(bentofile["service"]).split(":")[-1])


def bentoml_snake_case(name: str) -> str:
    """BentoML's own conversion of a service's name into a Bento's: snake case, then its Tag's
    lower case (bentoml._internal.tag)."""
    from shipyard_serving.compat import bento_name

    return bento_name(name)


def command_line(command: list[str]) -> list[str]:
    """A command from shipyard.yaml as run: a leading `python`/`python3` is this very interpreter,
    so hooks run in the environment shipyard runs in, activated or not."""
    import sys

    return [sys.executable, *command[1:]] if command[0] in ("python", "python3") else list(command)


def _describe(exc: ValidationError) -> str:
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())


def find_project_file(start: Path | None = None) -> Path:
    """`SHIPYARD_PROJECT` (the file or its folder), else shipyard.yaml here or in a parent folder."""
    explicit = os.environ.get("SHIPYARD_PROJECT")
    if explicit:
        path = Path(explicit).resolve()
        path = path / PROJECT_FILE if path.is_dir() else path
        if not path.is_file():
            raise ProjectError(f"SHIPYARD_PROJECT is {explicit!r} but {path} does not exist")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder / PROJECT_FILE
    raise ProjectError(f"no {PROJECT_FILE} in {here} or any folder above it: run `shipyard init` in your BentoML "
                       "project (the folder you run `bentoml build` in), or cd into one")


M = TypeVar("M", bound=BaseModel)


def read_yaml_model(path: Path, model: type[M], error: type[Exception]) -> M:
    """A YAML file validated by a pydantic model; `error` names the file, each key and its rule."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: must be a mapping of keys to values, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{path} is invalid:\n{_describe(exc)}") from None


def read_project(path: Path) -> Project:
    project = read_yaml_model(path, Project, ProjectError)
    project._root = path.parent.resolve()
    return project


@lru_cache(maxsize=8)
def _cached(path: Path, mtime_ns: int) -> Project:
    return read_project(path)


def current_project() -> Project:
    """The project the working directory (or SHIPYARD_PROJECT) is in."""
    path = find_project_file()
    return _cached(path, path.stat().st_mtime_ns)
