"""A model that breaks the output contract on purpose, to provoke the service's output validation.

The service runs the model's ONNX graph, so the broken model is an ONNX graph too, with the real
model's inputs. Chosen by the request's amount so one server exercises every failure: 111 -> NaN,
222 -> a probability of 1.5, 333 -> the wrong number of answers. Any other amount gets 0.1.
"""

from __future__ import annotations

import numpy as np


def contract_breaking_onnx(model_version: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    from service.schemas import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    inputs = [helper.make_tensor_value_info(c, TensorProto.STRING, [None, 1]) for c in CATEGORICAL_FEATURES]
    inputs += [helper.make_tensor_value_info(c, TensorProto.DOUBLE, [None, 1]) for c in NUMERIC_FEATURES]
    const = lambda name, value, dtype=np.float64: numpy_helper.from_array(np.array(value, dtype=dtype), name)  # noqa: E731
    nodes = [
        helper.make_node("Flatten", ["amount"], ["amount_2d"], axis=0),
        helper.make_node("Squeeze", ["amount_2d", "zero"], ["amounts"]),
        helper.make_node("Equal", ["amounts", "c111"], ["is111"]),
        helper.make_node("Equal", ["amounts", "c222"], ["is222"]),
        helper.make_node("Equal", ["amounts", "c333"], ["is333"]),
        helper.make_node("Where", ["is222", "c1_5", "c0_1"], ["p222"]),
        helper.make_node("Where", ["is111", "nan", "p222"], ["p"]),
        helper.make_node("Compress", ["p", "is333"], ["extra"], axis=0),
        helper.make_node("Concat", ["p", "extra"], ["probability"], axis=0),
        helper.make_node("GreaterOrEqual", ["probability", "c0_5"], ["fraud"]),
        helper.make_node("Cast", ["fraud"], ["label"], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes, "contract_breaker", inputs,
        [helper.make_tensor_value_info("probability", TensorProto.DOUBLE, [None]),
         helper.make_tensor_value_info("label", TensorProto.INT64, [None])],
        initializer=[const("zero", [0], np.int64), const("c111", 111.0), const("c222", 222.0), const("c333", 333.0),
                     const("c1_5", 1.5), const("c0_1", 0.1), const("nan", np.nan), const("c0_5", 0.5)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    helper.set_model_props(model, {"model_version": model_version, "threshold": "0.5"})
    return model.SerializeToString()
