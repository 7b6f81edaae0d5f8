"""`shipyard <verb>`: argument parsing and printing only; every step lives in its own module.

Exit codes follow kubectl: 0 success, 1 a step, gate or check failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Callable, Sequence

from shipyard import __version__
from shipyard.paths import configure_environment

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


def _cmd_train(args: argparse.Namespace) -> int:
    from service.model import train_and_register
    from shipyard.output import info, table
    from shipyard.paths import data_dir

    started = time.monotonic()
    info(f"generating {args.rows} transactions (seed {args.seed}) and training")
    trained = train_and_register(data_dir(), seed=args.seed, rows=args.rows)
    m = trained.metrics
    print(f"model {trained.tag} saved in {time.monotonic() - started:.1f}s")
    print(table(["metric", "holdout value"], [
        ["roc_auc", f"{m['roc_auc']:.4f}"],
        ["pr_auc", f"{m['pr_auc']:.4f}"],
        [f"recall@precision>={m['target_precision']}", f"{m['recall_at_precision']:.4f}"],
        ["threshold", f"{trained.threshold:.4f}"],
        ["fraud rate", f"{m['holdout_fraud_rate']:.4f}"],
    ]))
    print(f"data: {trained.full_path} (hash {trained.data_hash[:19]}...), sample: {trained.sample_path}")
    return EXIT_OK


def _cmd_build(args: argparse.Namespace) -> int:
    from shipyard.bento import build_bento
    from shipyard.output import info

    started = time.monotonic()
    info("building the Bento from bentofile.yaml")
    bento = build_bento()
    print(f"bento {bento.tag} (model {bento.model_tag}) built in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def _cmd_deploy(args: argparse.Namespace) -> int:
    from shipyard.bento import resolve_bento
    from shipyard.config import load_environment
    from shipyard.image import resolve_deployable
    from shipyard.manifests import ImageRef
    from shipyard.output import info
    from shipyard.targets import LocalTarget, target_for

    env = load_environment(args.env)
    target = target_for(env, args.target)
    if isinstance(target, LocalTarget):
        if args.image or args.dry_run:
            raise UsageError("--image and --dry-run apply to the kubernetes target; the local target serves a Bento")
        bento = resolve_bento(args.bento)
        started = time.monotonic()
        st = target.deploy(bento.tag, bento.model_tag, progress=info)
        print(f"{env.name}: serving {st.bento} (model {st.model}) at {st.url}, ready after {time.monotonic() - started:.1f}s")
        return EXIT_OK
    reference, notes = resolve_deployable(args.image)
    info(f"deploying {reference} to {env.name} (namespace {env.namespace})")
    result = target.deploy(ImageRef.parse(reference), notes, progress=info, dry_run=args.dry_run,
                           timeout_s=args.timeout)
    if args.dry_run:
        print(f"{env.name}: dry run, {'changes shown above' if result.changed else 'nothing would change'}")
    else:
        print(f"{env.name}: {result.ready}/{result.desired} replicas ready running {result.image} "
              f"({'updated' if result.changed else 'unchanged'}) in {result.seconds:.1f}s")
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from shipyard.config import load_environment
    from shipyard.manifests import parity
    from shipyard.output import print_json, table

    left, right = load_environment(args.left), load_environment(args.right)
    allow = left.parity.allow if left.parity else []
    diffs = parity(left, right, allow)
    if args.output == "json":
        print_json([asdict(d) for d in diffs])
    elif diffs:
        print(table(["object", "path", left.name, right.name, "allowed"],
                    [[d.obj, d.path, d.left, d.right, "yes" if d.allowed else "NO"] for d in diffs]))
    bad = [d for d in diffs if not d.allowed]
    if args.output != "json":
        print(f"{len(diffs)} differences, {len(bad)} outside {left.name}'s parity.allow {allow}")
    return EXIT_FAILED if bad else EXIT_OK


def _cmd_image_build(args: argparse.Namespace) -> int:
    from shipyard.image import build_image
    from shipyard.output import info

    record = build_image(args.bento, args.registry, echo=info)
    print(f"{record.reference}")
    info(f"image {record.tag} ({record.size_bytes / 1e6:.0f} MB) from {record.bento}, model {record.model}, "
         f"built and pushed in {record.build_seconds:.1f}s")
    return EXIT_OK


def _cmd_image_list(args: argparse.Namespace) -> int:
    from shipyard.image import list_images
    from shipyard.output import print_json, table

    records = list_images()
    if args.output == "json":
        print_json([{**asdict(r), "digest": r.digest} for r in records])
    else:
        print(table(["bento", "model", "digest", "size", "built"],
                    [[r.bento, r.model, r.reference, f"{r.size_bytes / 1e6:.0f}MB", r.built_at] for r in records]))
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from shipyard.config import SUITES, load_environment
    from shipyard.harness.report import summary
    from shipyard.harness.run import verify
    from shipyard.output import info, print_json

    env = load_environment(args.env)
    requested = None
    if args.suite:
        unknown = [s for s in args.suite if s not in SUITES]
        if unknown:
            raise UsageError(f"unknown suite {', '.join(unknown)}: choose from {', '.join(SUITES)}")
        requested = args.suite
    overrides = {}
    if args.short:
        overrides = {"load": {"duration_s": 10}, "contract": {"examples": 200},
                     "stress": {"step_s": 3, "overload_s": 10, "recovery_s": 10, "peak_users": 48}}
    verdict, path = verify(env, requested, args.target, overrides, progress=info)
    if args.output == "json":
        print_json(verdict)
    else:
        print(summary(verdict))
        print(f"verdict: {path}\nreport:  {path.with_suffix('.html')}")
    return EXIT_OK if verdict["passed"] else EXIT_FAILED


def _print_release(doc: dict) -> None:
    check = "; ".join(f"{', '.join(c['suites'])} {'passed' if c['passed'] else 'FAILED'}" for c in doc.get("post_deploy", []))
    print(f"release {doc['seq']} ({doc['kind']}) in {doc['environment']}: {doc['subject']} -> {doc['outcome']}"
          + (f"; post-deploy {check}" if check else "") + (f"; {doc['note']}" if doc.get("note") else ""))


def _cmd_promote(args: argparse.Namespace) -> int:
    from shipyard.output import info
    from shipyard.release import promote

    outcome = promote(args.source, args.destination, args.target, args.dry_run, args.approve, progress=info)
    if args.dry_run:
        print("plan (nothing changed):\n  " + "\n  ".join(outcome.plan))
        return EXIT_OK
    _print_release(outcome.release)
    if outcome.rollback:
        _print_release(outcome.rollback)
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _cmd_rollback(args: argparse.Namespace) -> int:
    from shipyard.output import info
    from shipyard.release import rollback

    outcome = rollback(args.env, args.to, args.target, progress=info)
    _print_release(outcome.release)
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _cmd_history(args: argparse.Namespace) -> int:
    from shipyard.config import load_environment
    from shipyard.output import print_json, table
    from shipyard.release import releases
    from shipyard.targets import target_for

    history = releases(target_for(load_environment(args.env), args.target))
    if args.output == "json":
        print_json(history)
        return EXIT_OK
    print(table(["seq", "kind", "subject", "previous", "model", "verdict", "outcome", "by", "at"],
                [[r["seq"], r["kind"], r["subject"].split("@")[-1][:19], (r["previous"] or "-").split("@")[-1][:19],
                  r["model_version"] or "-", (r["verdict"] or {}).get("finished_at", "-"), r["outcome"],
                  r["by"].split(":")[0], r["at"]] for r in history]))
    return EXIT_OK


def _stored_model(tag: str):
    from service.model import load_from_store

    try:
        return load_from_store(tag)
    except LookupError as exc:
        raise UsageError(str(exc)) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from shipyard.output import info

    output = Path(args.output)
    rejects = Path(args.rejects) if args.rejects else output.with_name(output.stem + ".rejects.csv")
    started = time.monotonic()
    if args.target == "kubernetes":
        from shipyard.config import load_environment
        from shipyard.targets import KubernetesTarget, run_batch_job

        if not args.env:
            raise UsageError("--target kubernetes needs --env: the Job runs in that environment's namespace")
        job = run_batch_job(KubernetesTarget(load_environment(args.env)), Path(args.input), output, rejects,
                            progress=info, timeout_s=args.timeout)
        print(f"{job.rows} rows in = {job.scored} scored ({output}) + {job.rejected} rejected ({rejects}) "
              f"by job/{job.job} in {job.seconds:.1f}s")
        return EXIT_OK
    from service.batch import score_file

    model = _stored_model(args.model)
    signal.signal(signal.SIGTERM, _interrupt)  # a Job's pod being stopped: clean up like Ctrl-C

    def progress(rows: int, scored: int, rejected: int) -> None:
        info(f"{rows} rows: {scored} scored, {rejected} rejected ({rows / max(time.monotonic() - started, 1e-9):.0f} rows/s)")

    result = score_file(Path(args.input), output, rejects, model.pipeline, model.threshold, model.tag,
                        args.chunk_rows, progress)
    print(f"{result.rows} rows in = {result.scored} scored ({result.output}) + {result.rejected} rejected "
          f"({result.rejects}) in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def _cmd_edge_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.edge import PARITY_TOLERANCE, export
    from shipyard.output import info, table
    from shipyard.paths import state_dir

    model = _stored_model(args.model)
    output = Path(args.output) if args.output else state_dir() / "edge" / f"{model.tag.replace(':', '-')}.onnx"
    info(f"exporting {model.tag} to ONNX and checking it against scikit-learn on the model's holdout")
    result = export(model.pipeline, model.tag, model.threshold, model.holdout(), output)
    p = result.parity
    print(table(["check", "value"], [
        ["file", f"{result.path} ({result.size_bytes / 1024:.1f} KiB)"],
        ["holdout rows", str(p.rows)],
        ["max |p_onnx - p_sklearn|", f"{p.max_abs_diff:.2e} (allowed {PARITY_TOLERANCE:.0e})"],
        ["decision agreement", f"{p.decision_agreement:.2%}"],
        ["1-row latency, onnxruntime (p50)", f"{result.latency_ms_p50:.3f} ms"],
        ["1-row latency, scikit-learn (p50)", f"{result.sklearn_latency_ms_p50:.3f} ms"],
    ]))
    return EXIT_OK


def _age(started_at: str) -> str:
    if not started_at:
        return ""
    seconds = int((datetime.now(timezone.utc) - datetime.fromisoformat(started_at)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cmd_status(args: argparse.Namespace) -> int:
    from shipyard.config import known_environments, load_environment
    from shipyard.output import print_json, table
    from shipyard.targets import target_for

    from shipyard.config import ConfigError
    from shipyard.output import info
    from shipyard.targets import Status

    if args.env:
        statuses = [target_for(load_environment(args.env), args.target).status()]
    else:
        # One broken environment.yaml must not hide the others: it gets a row and an error line.
        statuses = []
        for name in known_environments():
            try:
                statuses.append(target_for(load_environment(name), args.target).status())
            except ConfigError as exc:
                info(f"error: {exc}")
                statuses.append(Status(name, args.target or "?", "invalid"))
    if args.output == "json":
        print_json([asdict(s) for s in statuses])
    else:
        print(table(
            ["environment", "target", "state", "bento", "model", "where", "age"],
            [[s.environment, s.target, s.state, s.bento, s.model,
              s.url or (s.image.split("@")[-1][:19] + "..." if s.image else ""), _age(s.started_at)] for s in statuses],
        ))
        for s in statuses:  # why a release is not ready, workload by workload
            for problem in s.problems:
                print(f"{s.environment}: {problem}")
    return EXIT_OK


def _cmd_stop(args: argparse.Namespace) -> int:
    from shipyard.config import load_environment
    from shipyard.targets import target_for

    env = load_environment(args.env)
    if target_for(env, "local").stop():
        print(f"{env.name}: stopped")
    else:
        print(f"{env.name}: was not running")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shipyard",
        description=(
            "Take a fraud-scoring model from training to production with evidence: "
            "train -> build (Bento) -> deploy to an environment -> status/stop."
        ),
        epilog="Exit codes: 0 success, 1 a step or check failed, 2 bad usage or input.",
    )
    parser.add_argument("--version", action="version", version=f"shipyard {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)

    p = verbs.add_parser("train", help="generate data, train the model, save it to the model store",
                         description="Generates the seeded transaction data set and its representative "
                                     "sample, trains the pipeline, evaluates it on a holdout and saves it "
                                     "with its metrics and data hash to the BentoML model store.")
    p.add_argument("--seed", type=_non_negative_int, default=7, help="random seed for data and training (default 7)")
    p.add_argument("--rows", type=_rows, default=200_000, help="rows in the full data set (default 200000, min 2000)")
    p.set_defaults(func=_cmd_train)

    p = verbs.add_parser("build", help="build the Bento from bentofile.yaml",
                         description="Builds the Bento (service code + the latest trained model + pinned "
                                     "requirements) from bentofile.yaml.")
    p.set_defaults(func=_cmd_build)

    p = verbs.add_parser("image", help="build, push and list OCI images of the Bento",
                         description="OCI images of the Bento, pushed to a registry and referred to by digest.")
    image_verbs = p.add_subparsers(dest="image_verb", metavar="<action>", required=True)
    q = image_verbs.add_parser("build", help="containerize the Bento, push it, print its digest",
                               description="Runs `bentoml containerize` on the Bento (base image and template "
                                           "from bentofile.yaml), pushes it to the registry and prints the "
                                           "repository digest (name@sha256:...) the registry reports.")
    q.add_argument("--bento", default="fraud_scorer:latest", help="Bento tag (default fraud_scorer:latest)")
    q.add_argument("--registry", help="registry host:port (default $SHIPYARD_REGISTRY or 127.0.0.1:5000)")
    q.set_defaults(func=_cmd_image_build)
    q = image_verbs.add_parser("list", help="images built, with Bento, model and digest",
                               description="Lists the images `shipyard image build` pushed.")
    q.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    q.set_defaults(func=_cmd_image_list)

    p = verbs.add_parser("deploy", help="serve a Bento in an environment",
                         description="Serves the Bento in the environment defined by "
                                     "environments/<env>/environment.yaml and waits until /readyz answers.")
    p.add_argument("env", help="environment name (a folder under environments/)")
    p.add_argument("--target", choices=["local", "kubernetes"], help="override environment.yaml's target")
    p.add_argument("--bento", default="fraud_scorer:latest", help="local target: Bento tag (default fraud_scorer:latest)")
    p.add_argument("--image", help="kubernetes target: image name@sha256:... (default: the last `shipyard image build`)")
    p.add_argument("--dry-run", action="store_true", help="kubernetes target: show what would change (server-side), change nothing")
    p.add_argument("--timeout", type=_positive_float, default=300, help="kubernetes target: rollout timeout in seconds (default 300)")
    p.set_defaults(func=_cmd_deploy)

    p = verbs.add_parser("diff", help="compare two environments' manifests against the parity allow-list",
                         description="Renders both environments with the same image and shows every difference; "
                                     "exits 1 when one falls outside the first environment's parity.allow.")
    p.add_argument("left", help="environment whose parity.allow applies (e.g. staging)")
    p.add_argument("right", help="environment to compare with (e.g. production)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.set_defaults(func=_cmd_diff)

    p = verbs.add_parser("verify", help="run the staged suites against an environment and record a verdict",
                         description="Runs smoke, integration, contract, acceptance, load and stress against the "
                                     "environment (smoke first; a failed smoke stops the run), judges the gates "
                                     "of its environment.yaml, and stores a verdict (JSON) and a report (HTML) "
                                     "for the exact image digest or Bento. Exit 0 only when every gate passed.")
    p.add_argument("env", help="environment name")
    p.add_argument("--suite", action="append", help="run only this suite (repeatable): "
                                                    "smoke, integration, contract, acceptance, load, stress")
    p.add_argument("--target", choices=["local", "kubernetes"], help="override environment.yaml's target")
    p.add_argument("--short", action="store_true", help="seconds-long load/stress and fewer contract cases (for trying it out)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.set_defaults(func=_cmd_verify)

    p = verbs.add_parser("promote", help="promote the verified subject of one environment to the next",
                         description="Deploys to <destination> exactly the image digest (or Bento) running in "
                                     "<source>, only with a passing, fresh verdict for it, parity between the "
                                     "two and the promotion lock; runs the post-deploy suites there and rolls "
                                     "back by itself when they fail. Records a release either way.")
    p.add_argument("source", nargs="?", default="staging", help="environment to promote from (default staging)")
    p.add_argument("destination", nargs="?", help="environment to promote to (default: source's promotion.to)")
    p.add_argument("--target", choices=["local", "kubernetes"], help="override environment.yaml's target")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the gates that allow it; change nothing")
    p.add_argument("--approve", action="store_true", help="the acceptance sign-off, when promotion.requires_approval")
    p.set_defaults(func=_cmd_promote)

    p = verbs.add_parser("rollback", help="return an environment to a previous release",
                         description="Deploys the previous successful release's subject (or release N's), "
                                     "checks it with smoke and records it as a release.")
    p.add_argument("env", help="environment name")
    p.add_argument("--to", type=_non_negative_int, help="release sequence number (see `shipyard history`)")
    p.add_argument("--target", choices=["local", "kubernetes"], help="override environment.yaml's target")
    p.set_defaults(func=_cmd_rollback)

    p = verbs.add_parser("history", help="releases of an environment",
                         description="Every promotion and rollback recorded in the environment, oldest first.")
    p.add_argument("env", help="environment name")
    p.add_argument("--target", choices=["local", "kubernetes"], help="override environment.yaml's target")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.set_defaults(func=_cmd_history)

    p = verbs.add_parser("batch", help="score a file of transactions: predictions and rejects out",
                         description="Validates every row of a CSV, JSON Lines or Parquet file with the "
                                     "service's schema, scores valid rows in chunks with the model, writes "
                                     "predictions and a rejects file (row, field, rule, reason). Streams the "
                                     "input (bounded memory) and prints progress. Rows in = scored + rejected, "
                                     "checked; outputs appear only when complete, so an interrupted run "
                                     "(Ctrl-C, SIGTERM) leaves nothing that looks finished: run it again.")
    p.add_argument("input", help="transactions: .csv (header row), .jsonl/.ndjson or .parquet")
    p.add_argument("output", help="predictions to write: .csv or .parquet")
    p.add_argument("--rejects", help="rejects CSV (default: <output stem>.rejects.csv)")
    p.add_argument("--model", default="fraud_detector:latest", help="local: model tag (default fraud_detector:latest)")
    p.add_argument("--target", choices=["local", "kubernetes"], default="local",
                   help="local (default): score here; kubernetes: a Job in --env's namespace, from its CronJob, "
                        "with the image and model the environment runs (input up to 900 KiB)")
    p.add_argument("--env", help="kubernetes: environment whose namespace runs the Job")
    p.add_argument("--timeout", type=_positive_float, default=600, help="kubernetes: seconds to wait for the Job")
    p.add_argument("--chunk-rows", type=_rows, default=50_000, help="rows read, validated and scored at once "
                                                                  "(default 50000, min 2000)")
    p.set_defaults(func=_cmd_batch)

    p = verbs.add_parser("edge", help="export the model for devices (ONNX) with a parity check",
                         description="Edge mode: the model as an ONNX file for onnxruntime on a device.")
    edge_verbs = p.add_subparsers(dest="edge_verb", required=True, metavar="<edge verb>")
    q = edge_verbs.add_parser("export", help="convert the model to ONNX; write it only if it matches scikit-learn",
                              description="Converts the trained pipeline to ONNX (input schema and threshold in its "
                                          "metadata), scores the model's whole holdout with both onnxruntime and "
                                          "scikit-learn, and writes the file only when every probability agrees "
                                          "within 1e-5 and every decision is the same. Prints size and latency.")
    q.add_argument("--model", default="fraud_detector:latest", help="model tag (default fraud_detector:latest)")
    q.add_argument("-o", "--output", help="ONNX file to write (default .shipyard/edge/<model>-<version>.onnx)")
    q.set_defaults(func=_cmd_edge_export)

    p = verbs.add_parser("status", help="show what each environment serves",
                         description="Shows, per environment, its state, Bento, model, URL and age.")
    p.add_argument("env", nargs="?", help="one environment (default: all)")
    p.add_argument("--target", choices=["local", "kubernetes"], help="override environment.yaml's target")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.set_defaults(func=_cmd_status)

    p = verbs.add_parser("stop", help="stop an environment's local server",
                         description="Stops the environment's local server (SIGTERM, then SIGKILL after 15 s).")
    p.add_argument("env", help="environment name")
    p.set_defaults(func=_cmd_stop)
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def _rows(text: str) -> int:
    value = _non_negative_int(text)
    if value < 2000:
        raise argparse.ArgumentTypeError(f"must be >= 2000 so the holdout has fraud cases, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    configure_environment()
    args = build_parser().parse_args(argv)
    from shipyard.bento import BuildError
    from shipyard.config import ConfigError
    from shipyard.image import ImageError
    from shipyard.kubectl import ClusterError
    from shipyard.manifests import ManifestError
    from shipyard.harness.run import VerifyError
    from service.batch import BatchError
    from service.edge import EdgeError
    from shipyard.release import PromotionRefused
    from shipyard.targets import TargetError

    handlers: dict[type[Exception], int] = {ConfigError: EXIT_USAGE, UsageError: EXIT_USAGE,
                                            BuildError: EXIT_FAILED, TargetError: EXIT_FAILED,
                                            ImageError: EXIT_FAILED, ClusterError: EXIT_FAILED,
                                            ManifestError: EXIT_FAILED, VerifyError: EXIT_FAILED,
                                            PromotionRefused: EXIT_FAILED, BatchError: EXIT_FAILED,
                                            EdgeError: EXIT_FAILED}
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except tuple(handlers) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return handlers[type(exc)]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
