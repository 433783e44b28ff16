"""Tiny ONNX models with the real tensor contracts, built by the tests (no weights are downloaded here).

depth: predicted_depth = mean of the normalised channels (1x1 convolution), so a photo that
brightens downwards looks like a floor receding upwards.
segmentation: 150 logits by 1x1 convolution; class 3 (floor) wins where the red channel is bright,
class 0 (wall) elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def depth_model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 1 / 3, np.float32), "w")
    bias = numpy_helper.from_array(np.array([3.0], np.float32), "b")  # keeps disparity positive
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["pixel_values", "w", "b"], ["conv"]),
            helper.make_node("Squeeze", ["conv", "axes"], ["predicted_depth"]),
        ],
        "tiny_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("predicted_depth", TensorProto.FLOAT, ["N", "H", "W"])],
        [weight, bias, axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def segmentation_model() -> onnx.ModelProto:
    w = np.zeros((150, 3, 1, 1), np.float32)
    b = np.full((150,), -5.0, np.float32)
    w[3, 0, 0, 0] = 4.0  # floor: bright red (channel 0 is R after the service's BGR->RGB)
    b[3] = 0.0
    b[0] = 1.0  # wall otherwise
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "w", "b"], ["logits"])],
        "tiny_segmentation",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 150, "H", "W"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def write_tiny_models(models_dir: Path) -> None:
    """Writes MODELS_DIR/{depth,segmentation}/1/model.onnx."""
    _save(depth_model(), models_dir / "depth" / "1" / "model.onnx")
    _save(segmentation_model(), models_dir / "segmentation" / "1" / "model.onnx")
