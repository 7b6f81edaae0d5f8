"""`shipyard <verb>`: argument parsing and printing only; every step lives in its own module.

Exit codes follow kubectl: 0 success, 1 a step, gate or check failed, 2 bad usage or input. The
project's hooks (shipyard.yaml `hooks`) are verbs too: `shipyard train --seed 3` runs the train
hook with those arguments, in the same Python environment as shipyard.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Sequence

import click

from shipyard import __version__
from shipyard.paths import configure_environment

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TARGET = click.option("--target", type=click.Choice(["local", "kubernetes"]),
                      help="where the environment runs (default: its environment.yaml's target)")
OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
                      help="output format")
POSITIVE = click.FloatRange(min=0, min_open=True)
# Hooks take their own arguments, --help included: shipyard passes everything through.
PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


def _hooks() -> dict[str, list[str]]:
    from shipyard.project import ProjectError, current_project

    try:
        return current_project().hooks
    except ProjectError:
        return {}


def run_hook(name: str, args: Sequence[str]) -> None:
    """Replaces this process with the project's hook, so its output, its signals (Ctrl-C, a Job's
    SIGTERM) and its exit code are the hook's own. It runs in the working directory (relative
    paths mean what the user typed) with the project root importable."""
    from shipyard.project import command_line, current_project

    project = current_project()
    if name not in project.hooks:
        raise UsageError(f"this project has no `{name}` hook: add `hooks: {{{name}: <command>}}` to "
                         f"{project.root / 'shipyard.yaml'}")
    _exec(name, command_line(project.hooks[name]), args)


def _exec(name: str, command: list[str], args: Sequence[str]) -> None:
    from shipyard.project import current_project

    project = current_project()
    if "/" in command[0] and not os.path.isabs(command[0]):
        command[0] = str(project.root / command[0])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(project.root), os.environ.get("PYTHONPATH")])))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], [*command, *args], env)
    except OSError as exc:
        raise UsageError(f"hooks.{name}: cannot run {command[0]!r}: {exc.strerror}") from None


class ShipyardGroup(click.Group):
    """The built-in verbs, plus one per hook the project declares."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_hooks()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in _hooks():
            return command

        @click.pass_context
        def hook(context: click.Context) -> None:
            run_hook(name, context.args)

        return click.Command(name, callback=hook, context_settings=PASSTHROUGH, add_help_option=False,
                             help=f"the project's hook: {' '.join(_hooks()[name])} [ARGS]... (shipyard.yaml hooks.{name})")


@click.group(cls=ShipyardGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit codes: 0 success, 1 a step or check failed, 2 bad usage or input.")
@click.version_option(__version__, prog_name="shipyard")
def cli() -> None:
    """Take a BentoML project from build to production with evidence: build (Bento) -> image (by
    digest) -> deploy to an environment -> verify (staged suites, gates, a verdict) -> promote the
    verified subject -> rollback. Run it anywhere inside a project (a folder with shipyard.yaml;
    `shipyard init` writes one)."""


@cli.command()
def init() -> None:
    """Make the BentoML project in this folder a shipyard project.

    Writes shipyard.yaml, environments/{staging,production}/ (environment.yaml with working gates
    and kustomize overlays that only patch) and a hardened k8s/base for the Bento that
    bentofile.yaml describes. Refuses to overwrite anything; prints the next commands."""
    from pathlib import Path

    from shipyard.init import init_project

    for line in init_project(Path.cwd()):
        click.echo(line)


@cli.command()
def build() -> None:
    """Build the Bento from the project's bentofile (service code, the models it loads, pinned
    requirements). Only what the bentofile includes is copied into the build context."""
    from shipyard.bento import build_bento
    from shipyard.output import info
    from shipyard.project import current_project

    started = time.monotonic()
    info(f"building the Bento from {current_project().bentofile}")
    bento = build_bento()
    click.echo(f"bento {bento.tag} (model {bento.model_tag or 'none'}) built in {time.monotonic() - started:.1f}s")


@cli.group()
def image() -> None:
    """OCI images of the Bento, pushed to a registry and referred to by digest."""


@image.command("build")
@click.option("--bento", help="Bento tag (default: the project's latest)")
@click.option("--registry", help="registry host:port (default $SHIPYARD_REGISTRY or 127.0.0.1:5000)")
def image_build(bento: str | None, registry: str | None) -> None:
    """Run `bentoml containerize` on the Bento (base image and template from the bentofile), push
    it, and print the repository digest (name@sha256:...) the registry reports. Builds the
    companion images shipyard.yaml names too."""
    from shipyard.image import build_image
    from shipyard.output import info

    record = build_image(bento, registry, echo=info)
    click.echo(record.reference)
    info(f"image {record.tag} ({record.size_bytes / 1e6:.0f} MB) from {record.bento}, model {record.model}, "
         f"built and pushed in {record.build_seconds:.1f}s")
    if record.jobs_reference:
        info(f"jobs image (batch, stream, hooks; deployed with it): {record.jobs_reference}")
    if record.runner_reference:
        info(f"runner image (the staged suites in the cluster; deployed with it): {record.runner_reference}")


@image.command("list")
@OUTPUT
def image_list(output: str) -> None:
    """The images `shipyard image build` pushed, with Bento, model and digest."""
    from shipyard.image import list_images
    from shipyard.output import print_json, table

    records = list_images()
    if output == "json":
        print_json([{**asdict(r), "digest": r.digest} for r in records])
    else:
        click.echo(table(["bento", "model", "digest", "size", "built", "jobs image"],
                         [[r.bento, r.model, r.reference, f"{r.size_bytes / 1e6:.0f}MB", r.built_at,
                           r.jobs_reference or "(the same)"] for r in records]))


@cli.command()
@click.argument("env")
@TARGET
@click.option("--bento", help="local target: Bento tag (default: the project's latest)")
@click.option("--image", "image_ref", help="kubernetes target: image name@sha256:... (default: the last `shipyard image build`)")
@click.option("--dry-run", is_flag=True, help="kubernetes target: show what would change (server-side), change nothing")
@click.option("--timeout", type=POSITIVE, default=300, show_default=True, help="kubernetes target: rollout timeout, seconds")
def deploy(env: str, target: str | None, bento: str | None, image_ref: str | None, dry_run: bool, timeout: float) -> None:
    """Serve the Bento (local) or roll out the image by digest (kubernetes) in ENV, an environment
    under the project's environments folder, and wait until it is ready."""
    from shipyard.bento import resolve_bento
    from shipyard.config import load_environment
    from shipyard.image import resolve_deployable
    from shipyard.manifests import ImageRef
    from shipyard.output import info
    from shipyard.targets import KubernetesTarget, LocalTarget

    environment = load_environment(env)
    # What is deployed differs by target (a Bento, an image by digest): the environment's declared
    # target (or --target) picks the command's path, each typed against its own target.
    if (target or environment.target) == "local":
        if image_ref or dry_run:
            raise UsageError("--image and --dry-run apply to the kubernetes target; the local target serves a Bento")
        built = resolve_bento(bento)
        started = time.monotonic()
        st = LocalTarget(environment).deploy(built.tag, built.model_tag, progress=info)
        click.echo(f"{environment.name}: serving {st.bento} (model {st.model}) at {st.url}, "
                   f"ready after {time.monotonic() - started:.1f}s")
        return
    if bento:
        raise UsageError("--bento applies to the local target; the kubernetes target deploys an image (--image)")
    reference, notes = resolve_deployable(image_ref)
    info(f"deploying {reference} to {environment.name} (namespace {environment.namespace})")
    result = KubernetesTarget(environment).deploy(ImageRef.parse(reference), notes, progress=info, dry_run=dry_run,
                                                  timeout_s=timeout)
    if dry_run:
        click.echo(f"{environment.name}: dry run, {'changes shown above' if result.changed else 'nothing would change'}")
    else:
        click.echo(f"{environment.name}: {result.ready}/{result.desired} replicas ready running {result.image} "
                   f"({'updated' if result.changed else 'unchanged'}) in {result.seconds:.1f}s")


@cli.command()
@click.argument("left")
@click.argument("right")
@OUTPUT
@click.pass_context
def diff(ctx: click.Context, left: str, right: str, output: str) -> None:
    """Render LEFT and RIGHT with the same image and show every difference; exit 1 when one falls
    outside LEFT's parity.allow."""
    from shipyard.config import load_environment
    from shipyard.manifests import parity
    from shipyard.output import print_json, table

    a, b = load_environment(left), load_environment(right)
    allow = a.parity.allow if a.parity else []
    diffs = parity(a, b, allow)
    if output == "json":
        print_json([asdict(d) for d in diffs])
    elif diffs:
        click.echo(table(["object", "path", a.name, b.name, "allowed"],
                         [[d.obj, d.path, d.left, d.right, "yes" if d.allowed else "NO"] for d in diffs]))
    bad = [d for d in diffs if not d.allowed]
    if output != "json":
        click.echo(f"{len(diffs)} differences, {len(bad)} outside {a.name}'s parity.allow {allow}")
    ctx.exit(EXIT_FAILED if bad else EXIT_OK)


@cli.command()
@click.argument("env")
@click.option("--suite", "suites", multiple=True, help="run only this suite (repeatable); default: every suite of the project")
@TARGET
@click.option("--short", is_flag=True, help="seconds-long load/stress and fewer contract cases (for trying it out)")
@OUTPUT
@click.pass_context
def verify(ctx: click.Context, env: str, suites: tuple[str, ...], target: str | None, short: bool, output: str) -> None:
    """Run the staged suites against ENV: smoke first (a failed smoke stops the run), the
    project's own suites, contract, load and stress; judge the gates of its environment.yaml and
    store a verdict (JSON) and a report (HTML) for the exact image digest or Bento. Exit 0 only
    when every gate passed.

    \b
    --target local: the suites run on this machine against the local server.
    --target kubernetes: every suite runs as pods in ENV's namespace against its Service
    (the runner image built with the image; load as locust's master and suites.load.workers
    worker pods, stress as one open-loop generator pod); results come back through the API server."""
    from shipyard.config import load_environment
    from shipyard.harness.report import summary
    from shipyard.harness.run import verify as run_verify
    from shipyard.output import info, print_json

    from shipyard.project import current_project

    known = current_project().suite_names
    unknown = [s for s in suites if s not in known]
    if unknown:
        raise UsageError(f"unknown suite {', '.join(unknown)}: this project's suites are {', '.join(known)}")
    overrides = {}
    if short:
        overrides = {"load": {"duration_s": 10}, "contract": {"examples": 200},
                     "stress": {"step_s": 3, "overload_s": 10}}  # its recovery_s is a most: it ends when recovered
    verdict, path = run_verify(load_environment(env), list(suites) or None, target, overrides, progress=info)
    if output == "json":
        print_json(verdict.document())
    else:
        click.echo(summary(verdict))
        click.echo(f"verdict: {path}\nreport:  {path.with_suffix('.html')}")
    ctx.exit(EXIT_OK if verdict.passed else EXIT_FAILED)


def _print_release(doc: dict[str, Any]) -> None:
    check = "; ".join(f"{', '.join(c['suites'])} {'passed' if c['passed'] else 'FAILED'}" for c in doc.get("post_deploy", []))
    click.echo(f"release {doc['seq']} ({doc['kind']}) in {doc['environment']}: {doc['subject']} -> {doc['outcome']}"
               + (f"; post-deploy {check}" if check else "") + (f"; {doc['note']}" if doc.get("note") else ""))
    for step in (doc.get("canary") or {}).get("steps", []):
        click.echo(f"  canary step {step['step']}: {step['share']:.0%} of pods for {step['seconds']:g} s: "
                   + ", ".join(f"{g['metric']}={g['measured']:.4g}" if g["measured"] is not None else f"{g['metric']}=no data"
                               for g in step["gates"])
                   + (" passed" if step.get("passed") else f" NOT JUDGED: {step['not_enough_traffic']}"
                      if step.get("not_enough_traffic") else " FAILED"))
    sent = (doc.get("canary") or {}).get("traffic")
    if sent:
        click.echo("  traffic during the canary: " + (f"no summary ({sent['error']})" if "error" in sent else
                   f"{sent['sent']} sent, answers by status {sent['statuses']}, {sent['failed']} failed"))


def _steps(canary: dict[str, Any] | None) -> str:
    """A release's canary steps in a table cell: `25%:ok 50%:error_rate`, `50%:no-traffic` for a step
    that never saw its minimum sample (or - for a replace)."""
    steps = (canary or {}).get("steps", [])
    return " ".join(f"{s['share_asked_pct']}%:" + ("ok" if s.get("passed") else "aborted" if s.get("aborted_by") else
                                                    "no-traffic" if s.get("not_enough_traffic") else
                                                    ",".join(g["metric"] for g in s["gates"] if not g["passed"]) or "failed")
                    for s in steps) or "-"


@cli.command()
@click.argument("source", default="staging")
@click.argument("destination", required=False)
@TARGET
@click.option("--dry-run", is_flag=True, help="print the plan and the gates that allow it; change nothing")
@click.option("--approve", is_flag=True, help="the acceptance sign-off, when promotion.requires_approval")
@click.option("--strategy", type=click.Choice(["replace", "canary"]),
              help="override SOURCE's promotion.strategy for this promotion (canary needs --target kubernetes)")
@click.option("--watch", is_flag=True, help="canary: a line every 5 s of each step with the canary's live metrics")
@click.option("--traffic", "traffic_rps", type=click.FloatRange(min=0, min_open=True, max=500), metavar="RPS",
              help="canary: while the steps are judged, a pod in DESTINATION's namespace sends RPS requests/s of the "
                   "project's traffic samples (as `shipyard traffic` does), stopped when the canary ends; for a demo, "
                   "or a production that has no clients yet")
@click.pass_context
def promote(ctx: click.Context, source: str, destination: str | None, target: str | None, dry_run: bool,
            approve: bool, strategy: str | None, watch: bool, traffic_rps: float | None) -> None:
    """Deploy to DESTINATION (default: SOURCE's promotion.to) exactly the image digest or Bento
    running in SOURCE (default staging), only with a passing, fresh verdict for it, parity between
    the two and the promotion lock; run the post-deploy suites there and roll back by itself when
    they fail. Records a release either way.

    With promotion.strategy canary (Kubernetes), the digest first serves a growing share of
    DESTINATION's pods, step by step; each step is judged on production's own metrics against
    the canary gates, and the first failing step aborts: the canary goes, stable keeps serving.
    A step whose canary has not answered the gates' `requests.min` waits up to `max_wait_s`
    for it, then fails as "not enough traffic" (not judged, rather than judged bad).
    `shipyard rollback DESTINATION` during a canary aborts it too."""
    from shipyard.output import info
    from shipyard.release import promote as run_promote

    outcome = run_promote(source, destination, target, dry_run, approve, progress=info, strategy=strategy,
                          watch=watch, traffic_rps=traffic_rps)
    if dry_run:
        click.echo("plan (nothing changed):\n  " + "\n  ".join(outcome.plan))
        return
    _print_release(outcome.release)
    if outcome.rollback:
        _print_release(outcome.rollback)
    ctx.exit(EXIT_OK if outcome.ok else EXIT_FAILED)


@cli.command()
@click.argument("env")
@click.option("--to", "to_seq", type=click.IntRange(min=0), help="release sequence number (see `shipyard history`)")
@TARGET
@click.pass_context
def rollback(ctx: click.Context, env: str, to_seq: int | None, target: str | None) -> None:
    """Return ENV to the previous successful release's subject (or release N's), check it with
    smoke and record it as a release."""
    from shipyard.output import info
    from shipyard.release import rollback as run_rollback

    outcome = run_rollback(env, to_seq, target, progress=info)
    _print_release(outcome.release)
    ctx.exit(EXIT_OK if outcome.ok else EXIT_FAILED)


@cli.command()
@click.argument("env")
@TARGET
@OUTPUT
def history(env: str, target: str | None, output: str) -> None:
    """Every promotion and rollback recorded in ENV, oldest first."""
    from shipyard.config import load_environment
    from shipyard.output import print_json, table
    from shipyard.release import releases
    from shipyard.targets import target_for

    records = releases(target_for(load_environment(env), target))
    if output == "json":
        print_json([r.document() for r in records])
        return
    click.echo(table(["seq", "kind", "subject", "previous", "model", "verdict", "canary", "outcome", "by", "at"],
                     [[r.seq, r.kind, r.subject.split("@")[-1][:19], (r.previous or "-").split("@")[-1][:19],
                       r.model_version or "-", r.verdict.finished_at if r.verdict else "-", _steps(r.canary),
                       r.outcome, r.by.split(":")[0], r.at] for r in records]))


@cli.command()
@click.argument("env")
@TARGET
@click.option("--rps", type=click.FloatRange(min=0, min_open=True, max=500), default=40, show_default=True,
              help="requests per second, at a fixed rate whatever the answers do")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True, max=3600), default=60, show_default=True,
              help="seconds to send for")
@OUTPUT
@click.pass_context
def traffic(ctx: click.Context, env: str, target: str | None, rps: float, duration: float, output: str) -> None:
    """Send ENV steady traffic from where its clients are, then summarise the answers.

    On Kubernetes a Job in ENV's namespace calls the Service by its cluster DNS name, with the
    image ENV serves (nothing from the host reaches a cluster address); locally the host calls the
    server. The bodies are shipyard.yaml's `traffic` samples and weights. A canary is judged on
    production's own metrics, so run this beside `shipyard promote` where production has no real
    clients (a demo, a test). Exit 1 when a request failed or got a 5xx."""
    from shipyard.config import load_environment
    from shipyard.output import info, print_json
    from shipyard.traffic import KubernetesTraffic, run_local

    environment = load_environment(env)
    if (target or environment.target) == "kubernetes":
        sender = KubernetesTraffic(environment, rps, duration)
        sender.start(info)
        try:
            summary = sender.wait(info)
        finally:
            sender.remove()
    else:
        summary = run_local(environment, rps, duration, info)
    if output == "json":
        print_json(summary)
    else:
        click.echo(f"{summary['sent']} sent to {summary['url']}: answers by status {summary['statuses']}, "
                   f"{summary['failed']} failed, p99 {summary['p99_ms']} ms"
                   + "".join(f"\n  {f}" for f in summary["failures"]))
    ctx.exit(EXIT_OK if summary["failed"] == 0 and summary["server_errors"] == 0 else EXIT_FAILED)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("source")
@click.argument("output")
@click.option("--target", type=click.Choice(["local", "kubernetes"]), default="local", show_default=True,
              help="local: the project's batch hook here; kubernetes: an Indexed Job in --env's namespace, one pod "
                   "per shard, with the image the environment runs, input and outputs on its batch volume")
@click.option("--env", help="kubernetes: environment whose namespace runs the Job")
@click.option("--shards", type=click.IntRange(1, 100),
              help="kubernetes: split the input into this many shards (default: the environment's batch.shards)")
@click.option("--resume", is_flag=True,
              help="kubernetes: finish an interrupted run of the same input: only shards without output run again")
@click.option("--timeout", type=POSITIVE, default=3600, show_default=True, help="kubernetes: seconds the Job may take")
@click.option("--rejects", help="rejects CSV (default: <output stem>.rejects.csv)")
@click.argument("hook_args", nargs=-1, type=click.UNPROCESSED)
def batch(source: str, output: str, target: str, env: str | None, shards: int | None, resume: bool, timeout: float,
          rejects: str | None, hook_args: tuple[str, ...]) -> None:
    """Score the file SOURCE into OUTPUT with the project's batch entry point (shipyard.yaml
    hooks.batch; further options go to it, e.g. --model), or, for a project without one, by sending
    each row as the body of one of its APIs (--api NAME), in process: rows in = scored + rejected,
    rejects with row, field and rule. Local runs it here; kubernetes splits SOURCE into shards scored in
    parallel by an Indexed Job, retries a failed shard, and merges the shards' outputs in order
    once every row is accounted for."""
    from pathlib import Path

    from shipyard.project import current_project

    if target == "local":
        if shards or resume:
            raise UsageError("--shards and --resume are for --target kubernetes; a local run is one process")
        files = [source, output, *(["--rejects", rejects] if rejects else []), *hook_args]
        project = current_project()
        if "batch" in project.hooks:
            run_hook("batch", files)
        # No entry point of its own: each row is a body for one of the service's APIs (--api), in process.
        _exec("batch", [sys.executable, "-m", "shipyard_serving.batch", "--service",
                        str(project.bentofile_data()["service"])], files)
    from shipyard.config import load_environment
    from shipyard.output import info
    from shipyard.targets import KubernetesTarget
    from shipyard.targets.batch import run_batch_job

    if not env:
        raise UsageError("--target kubernetes needs --env: the Job runs in that environment's namespace")
    if hook_args:
        raise UsageError(f"{' '.join(hook_args)}: the Job runs with the model its environment runs; "
                         "options for the batch hook apply to --target local")
    out = Path(output)
    rejected_to = Path(rejects) if rejects else out.with_name(out.stem + ".rejects.csv")
    job = run_batch_job(KubernetesTarget(load_environment(env)), Path(source), out, rejected_to, shards=shards,
                        resume=resume, progress=info, timeout_s=timeout)
    retried = f", {job.retried} failed pod(s) retried" if job.retried else ""
    click.echo(f"{job.rows} rows in = {job.scored} scored ({out}) + {job.rejected} rejected ({rejected_to}) "
               f"by job/{job.job} ({job.shards} shards{retried}) in {job.seconds:.1f}s")


def _age(started_at: str) -> str:
    if not started_at:
        return ""
    seconds = int((datetime.now(timezone.utc) - datetime.fromisoformat(started_at)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@cli.command()
@click.argument("env", required=False)
@TARGET
@OUTPUT
def status(env: str | None, target: str | None, output: str) -> None:
    """What each environment (or ENV) serves: state, Bento, model, where, age, and why a release
    that is not ready is not."""
    from shipyard.config import ConfigError, known_environments, load_environment
    from shipyard.output import info, print_json, table
    from shipyard.targets import Status, target_for

    if env:
        statuses = [target_for(load_environment(env), target).status()]
    else:
        # One broken environment.yaml must not hide the others: it gets a row and an error line.
        statuses = []
        for name in known_environments():
            try:
                statuses.append(target_for(load_environment(name), target).status())
            except ConfigError as exc:
                info(f"error: {exc}")
                statuses.append(Status(name, target or "?", "invalid"))
    if output == "json":
        print_json([asdict(s) for s in statuses])
        return
    click.echo(table(
        ["environment", "target", "state", "bento", "model", "where", "age"],
        [[s.environment, s.target, s.state, s.bento, s.model,
          s.url or (s.image.split("@")[-1][:19] + "..." if s.image else ""), _age(s.started_at)] for s in statuses],
    ))
    for s in statuses:
        for problem in s.problems:
            click.echo(f"{s.environment}: {problem}")


@cli.command()
@click.argument("env")
def stop(env: str) -> None:
    """Stop ENV's local server (SIGTERM, then SIGKILL after 15 s)."""
    from shipyard.config import load_environment
    from shipyard.targets import target_for

    environment = load_environment(env)
    click.echo(f"{environment.name}: {'stopped' if target_for(environment, 'local').stop() else 'was not running'}")


def _handlers() -> dict[type[Exception], int]:
    from shipyard.bento import BuildError
    from shipyard.config import ConfigError
    from shipyard.evidence import RecordError
    from shipyard.harness.run import VerifyError
    from shipyard.harness.staged.traffic import TrafficError
    from shipyard.image import ImageError
    from shipyard.init import InitError
    from shipyard.cluster import ClusterError
    from shipyard.manifests import ManifestError
    from shipyard.project import ProjectError
    from shipyard.release import PromotionLockLost, PromotionRefused
    from shipyard.targets import TargetError

    return {ConfigError: EXIT_USAGE, UsageError: EXIT_USAGE, ProjectError: EXIT_USAGE, InitError: EXIT_USAGE, BuildError: EXIT_FAILED,
            TargetError: EXIT_FAILED, ImageError: EXIT_FAILED, ClusterError: EXIT_FAILED, ManifestError: EXIT_FAILED,
            VerifyError: EXIT_FAILED, PromotionRefused: EXIT_FAILED, PromotionLockLost: EXIT_FAILED,
            TrafficError: EXIT_USAGE, RecordError: EXIT_FAILED}


def main(argv: Sequence[str] | None = None) -> int:
    configure_environment()
    handlers = _handlers()
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="shipyard", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        print("interrupted", file=sys.stderr)
        return 130
    except tuple(handlers) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return next(handlers[kind] for kind in type(exc).__mro__ if kind in handlers)  # subclasses too (ApiError)
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
