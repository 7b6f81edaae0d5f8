"""Edge mode: the trained pipeline as one ONNX file a device can run, and proof that it agrees.

The same file is what the real-time service runs (written into the model store at training, after
the same parity check): one row costs about 0.25 ms in onnxruntime against 4.5 ms through
scikit-learn's generic pipeline, and the numbers are the same to 1e-15.

Why a converter of our own: skl2onnx 1.20 converts HistGradientBoosting's categorical splits as if
they were numeric thresholds (and fails on scikit-learn 1.9's node arrays), which would give a
model that silently disagrees with the service. The graph is small and exact instead: the
OrdinalEncoder becomes ONNX-ML LabelEncoders, each tree becomes part of one ONNX-ML TreeEnsemble
(opset 5, whose BRANCH_MEMBER nodes express categorical splits), in float64 like scikit-learn,
then the baseline and a sigmoid. `check_parity` compares it with scikit-learn on real rows; the
export refuses to write a model that fails it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas only for the export and its check, never on the serving path
    import pandas as pd

from service.schemas import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, SCHEMA_VERSION, Transaction

PARITY_TOLERANCE = 1e-5
_OPSET, _ML_OPSET = 21, 5
_LEQ, _MEMBER = 0, 6  # TreeEnsemble node modes
_MISSING_CODE = -1.0  # the OrdinalEncoder's code for an unknown category: HGB treats it as missing


class EdgeError(Exception):
    """The pipeline cannot be exported, or its export disagrees with scikit-learn."""


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    decision_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE and self.decision_agreement == 1.0


def _tree_ensemble(classifier: Any) -> tuple[dict[str, Any], float]:
    """TreeEnsemble (ai.onnx.ml v5) attributes for a fitted binary HistGradientBoostingClassifier,
    mirroring sklearn's `_predict_one_from_raw_data`: numeric `x <= threshold` goes left; a
    category goes left when in the split's left set; NaN, negative codes and unknown categories
    follow `missing_go_to_left`."""
    from onnx import numpy_helper

    if classifier.n_trees_per_iteration_ != 1:
        raise EdgeError("only binary classifiers are exported")
    modes: list[int] = []
    feature_ids: list[int] = []
    splits: list[float] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    missing_true: list[int] = []
    members: list[float] = []
    leaf_weights: list[float] = []
    roots: list[int] = []
    for (predictor,) in classifier._predictors:
        nodes = predictor.nodes
        bitsets = predictor.raw_left_cat_bitsets
        if nodes[0]["is_leaf"]:  # a stump: a split whose two branches are the same leaf
            roots.append(len(modes))
            leaf = len(leaf_weights)
            leaf_weights.append(float(nodes[0]["value"]))
            modes.append(_LEQ); feature_ids.append(0); splits.append(0.0); missing_true.append(0)
            true_ids.append(leaf); true_leaf.append(1); false_ids.append(leaf); false_leaf.append(1)
            continue
        # Index every internal node and every leaf of this tree in the ensemble's two lists.
        internal = {i: len(modes) + k for k, i in enumerate(np.flatnonzero(~nodes["is_leaf"].astype(bool)))}
        leaves: dict[int, int] = {}
        for i in np.flatnonzero(nodes["is_leaf"].astype(bool)):
            leaves[int(i)] = len(leaf_weights)
            leaf_weights.append(float(nodes[i]["value"]))
        roots.append(internal[0])
        for i in sorted(internal):
            node = nodes[i]
            feature_ids.append(int(node["feature_idx"]))
            missing_left = bool(node["missing_go_to_left"])
            if node["is_categorical"]:
                words = bitsets[int(node["bitset_idx"])]
                left = [float(c) for c in range(32 * len(words)) if words[c // 32] >> (c % 32) & 1]
                # Unknown categories (and the encoder's -1) follow the missing direction.
                members.extend(left + ([_MISSING_CODE] if missing_left else []) + [np.nan])
                modes.append(_MEMBER)
                splits.append(0.0)
                missing_true.append(int(missing_left))
            else:
                modes.append(_LEQ)
                splits.append(float(node["num_threshold"]))
                missing_true.append(int(missing_left))
            for child, ids, is_leaf in ((int(node["left"]), true_ids, true_leaf),
                                        (int(node["right"]), false_ids, false_leaf)):
                if child in leaves:
                    ids.append(leaves[child]); is_leaf.append(1)
                else:
                    ids.append(internal[child]); is_leaf.append(0)
    as_tensor = lambda values, dtype: numpy_helper.from_array(np.asarray(values, dtype=dtype))  # noqa: E731
    attrs = {
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE: the baseline and the sigmoid follow as their own nodes
        "n_targets": 1,
        "tree_roots": roots,
        "nodes_modes": as_tensor(modes, np.uint8),
        "nodes_featureids": feature_ids,
        "nodes_splits": as_tensor(splits, np.float64),
        "nodes_truenodeids": true_ids,
        "nodes_trueleafs": true_leaf,
        "nodes_falsenodeids": false_ids,
        "nodes_falseleafs": false_leaf,
        "nodes_missing_value_tracks_true": missing_true,
        "leaf_targetids": [0] * len(leaf_weights),
        "leaf_weights": as_tensor(leaf_weights, np.float64),
    }
    if members:
        attrs["membership_values"] = as_tensor(members, np.float64)
    return attrs, float(np.ravel(classifier._baseline_prediction)[0])


def to_onnx(pipeline: Any, model_version: str, threshold: float) -> bytes:
    """The ONNX model: one [N, 1] input per feature (strings for categoricals, float64 for the
    rest), outputs `probability` [N] and `label` [N] (1 = fraud at the model's threshold)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    encode, classifier = pipeline.named_steps["encode"], pipeline.named_steps["classify"]
    encoder = encode.named_transformers_["categorical"]
    order = list(encode.get_feature_names_out())
    if order != list(CATEGORICAL_FEATURES) + list(NUMERIC_FEATURES):
        raise EdgeError(f"unexpected pipeline feature order {order}")
    nodes, inputs = [], []
    columns = []
    for name, categories in zip(CATEGORICAL_FEATURES, encoder.categories_):
        inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, [None, 1]))
        nodes.append(helper.make_node(
            "LabelEncoder", [name], [f"{name}_code"], domain="ai.onnx.ml",
            keys_strings=[str(c) for c in categories],
            values_tensor=numpy_helper.from_array(np.arange(len(categories), dtype=np.float64)),
            default_tensor=numpy_helper.from_array(np.array([_MISSING_CODE], dtype=np.float64))))
        columns.append(f"{name}_code")
    for name in NUMERIC_FEATURES:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.DOUBLE, [None, 1]))
        columns.append(name)
    attrs, baseline = _tree_ensemble(classifier)
    nodes += [
        helper.make_node("Concat", columns, ["features"], axis=1),
        helper.make_node("TreeEnsemble", ["features"], ["raw"], domain="ai.onnx.ml", **attrs),
        helper.make_node("Add", ["raw", "baseline"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability_2d"]),
        helper.make_node("Flatten", ["probability_2d"], ["probability_col"], axis=1),
        helper.make_node("Squeeze", ["probability_col", "axis1"], ["probability"]),
        helper.make_node("GreaterOrEqual", ["probability", "threshold"], ["is_fraud"]),
        helper.make_node("Cast", ["is_fraud"], ["label"], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes, "fraud_detector", inputs,
        [helper.make_tensor_value_info("probability", TensorProto.DOUBLE, [None]),
         helper.make_tensor_value_info("label", TensorProto.INT64, [None])],
        initializer=[numpy_helper.from_array(np.array([baseline]), "baseline"),
                     numpy_helper.from_array(np.array(threshold, dtype=np.float64), "threshold"),
                     numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET),
                                                    helper.make_opsetid("ai.onnx.ml", _ML_OPSET)],
                              producer_name="shipyard", doc_string="P(fraud) for one card transaction")
    model.ir_version = 10
    helper.set_model_props(model, {
        "model_version": model_version,
        "threshold": repr(threshold),
        "schema_version": SCHEMA_VERSION,
        "input_schema": json.dumps(Transaction.model_json_schema(), sort_keys=True),
        "features": json.dumps(list(FEATURES)),
    })
    checker.check_model(model, full_check=True)
    return model.SerializeToString()


def feeds(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """ONNX inputs from a frame of validated transactions (the device's side of the schema)."""
    feed = {c: frame[c].astype(str).to_numpy(dtype=object).reshape(-1, 1) for c in CATEGORICAL_FEATURES}
    feed.update({c: frame[c].to_numpy(dtype=np.float64).reshape(-1, 1) for c in NUMERIC_FEATURES})
    return feed


def transaction_feeds(transactions: Sequence[Transaction]) -> dict[str, np.ndarray]:
    """ONNX inputs straight from validated transactions: no DataFrame on the real-time path."""
    n = len(transactions)
    feed = {c: np.array([getattr(t, c) for t in transactions], dtype=object).reshape(n, 1)
            for c in CATEGORICAL_FEATURES}
    feed.update({c: np.array([getattr(t, c) for t in transactions], dtype=np.float64).reshape(n, 1)
                 for c in NUMERIC_FEATURES})
    return feed


class EdgeModel:
    """The exported model under onnxruntime: what a device runs."""

    def __init__(self, path_or_bytes: Path | bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        self.model_version = props["model_version"]
        self.threshold = float(props["threshold"])

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        return self.session.run(["probability"], feeds(frame))[0]

    def score(self, transactions: Sequence[Transaction]) -> np.ndarray:
        """P(fraud) per transaction, in order (what the real-time service calls)."""
        return self.session.run(["probability"], transaction_feeds(transactions))[0]

    def score_records(self, records: Sequence[dict[str, Any]]) -> list[float | Any]:
        """What a device does with raw input: the schema first (same rules and messages as the
        API), then the model. Each record gets its probability or its Rejection."""
        from service.frames import Rejection, judge

        verdicts = judge(records)
        valid = [v for v in verdicts if not isinstance(v, Rejection)]
        scores = iter(self.score(valid)) if valid else iter(())
        return [v if isinstance(v, Rejection) else float(next(scores)) for v in verdicts]


def check_parity(pipeline: Any, edge: EdgeModel, frame: pd.DataFrame, threshold: float) -> Parity:
    expected = pipeline.predict_proba(frame[list(FEATURES)])[:, 1]
    got = edge.probabilities(frame)
    agreement = float(np.mean((expected >= threshold) == (got >= threshold)))
    return Parity(len(frame), float(np.max(np.abs(expected - got))), agreement)


@dataclass(frozen=True)
class Export:
    path: Path
    size_bytes: int
    parity: Parity
    latency_ms_p50: float
    sklearn_latency_ms_p50: float


def _p50_ms(call, repeats: int = 200) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


ONNX_FILE = "pipeline.onnx"  # beside pipeline.joblib in the model store: what the service runs


def export(pipeline: Any, model_version: str, threshold: float, holdout: pd.DataFrame, output: Path) -> Export:
    """Writes the ONNX file only when it agrees with scikit-learn on every holdout row."""
    onnx_bytes = to_onnx(pipeline, model_version, threshold)
    edge = EdgeModel(onnx_bytes)
    parity = check_parity(pipeline, edge, holdout, threshold)
    if not parity.ok:
        raise EdgeError(f"the ONNX model disagrees with scikit-learn on {parity.rows} holdout rows: max |diff| "
                        f"{parity.max_abs_diff:.2e} (allowed {PARITY_TOLERANCE:.0e}), decision agreement "
                        f"{parity.decision_agreement:.4%}; nothing written")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(onnx_bytes)
    partial.replace(output)
    one = holdout.iloc[:1]
    return Export(output, len(onnx_bytes), parity, _p50_ms(lambda: edge.probabilities(one)),
                  _p50_ms(lambda: pipeline.predict_proba(one[list(FEATURES)])))


def main(argv: list[str] | None = None) -> int:
    """`python -m service.edge export` (the project's `edge` hook: `shipyard edge export`)."""
    import argparse
    import os
    import sys

    from service.model import load_from_store
    from service.schemas import MODEL_NAME

    parser = argparse.ArgumentParser(prog="shipyard edge", description="Edge mode: the model as an ONNX file for "
                                                                       "onnxruntime on a device.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="<edge verb>")
    export_parser = verbs.add_parser(
        "export", help="convert the model to ONNX; write it only if it matches scikit-learn",
        description="Converts the trained pipeline to ONNX (input schema and threshold in its metadata), scores "
                    "the model's whole holdout with both onnxruntime and scikit-learn, and writes the file only "
                    "when every probability agrees within 1e-5 and every decision is the same. Prints size and "
                    "latency.")
    export_parser.add_argument("--model", default=f"{MODEL_NAME}:latest", help=f"model tag (default {MODEL_NAME}:latest)")
    export_parser.add_argument("-o", "--output", help="ONNX file to write (default <state folder>/edge/<model>-<version>.onnx)")
    args = parser.parse_args(argv)
    try:
        model = load_from_store(args.model)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = Path(os.environ.get("SHIPYARD_STATE", ".shipyard"))
    output = Path(args.output) if args.output else state / "edge" / f"{model.tag.replace(':', '-')}.onnx"
    print(f"exporting {model.tag} to ONNX and checking it against scikit-learn on the model's holdout",
          file=sys.stderr, flush=True)
    try:
        result = export(model.pipeline, model.tag, model.threshold, model.holdout(), output)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    p = result.parity
    rows = [("file", f"{result.path} ({result.size_bytes / 1024:.1f} KiB)"), ("holdout rows", str(p.rows)),
            ("max |p_onnx - p_sklearn|", f"{p.max_abs_diff:.2e} (allowed {PARITY_TOLERANCE:.0e})"),
            ("decision agreement", f"{p.decision_agreement:.2%}"),
            ("1-row latency, onnxruntime (p50)", f"{result.latency_ms_p50:.3f} ms"),
            ("1-row latency, scikit-learn (p50)", f"{result.sklearn_latency_ms_p50:.3f} ms")]
    width = max(len(name) for name, _ in rows)
    print("CHECK".ljust(width) + "   VALUE")
    for name, value in rows:
        print(f"{name.ljust(width)}   {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
