"""Tiny ONNX models with the real tensor contracts, built by the tests (no weights are downloaded here).

depth: predicted_depth = mean of the normalised channels (1x1 convolution), so a photo that
brightens downwards looks like a floor receding upwards.
segmentation: 150 logits by 1x1 convolution; class 3 (floor) wins where the red channel is bright,
class 0 (wall) elsewhere.
diffusion: inside the mask, a smooth coloured pattern whose phase follows the seed and the prompt,
blended over the image by strength; outside it the image unchanged.
prompt segmentation: the encoder's embeddings are the normalised colour averaged over 16 x 16
blocks (each channel repeated); the decoder samples them under the positive clicks and scores every
cell by its colour's distance to the nearest of them: candidate 0 is the clicked colour's region
(score 0.9), candidate 1 its complement (score 0.1).
intrinsic: shading = the photo's grey (ImageNet normalisation undone, channels averaged, raised to
2.2 for linear light) averaged over 5 x 5 pixels: on a surface of one colour, its light.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from devstack.model_export import install
from renderkit.triton import (
    DEPTH,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTRINSIC,
    PROMPT_DECODER,
    PROMPT_ENCODER,
    PROMPT_SIDE,
    SEGMENTATION,
)


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


def metric_depth_model(near_m: float = 1.0, per_level_m: float = 5.0 / 255.0) -> onnx.ModelProto:
    """metric_depth = near_m + per_level_m * the grey level (0..255) of the photo, recovered from the
    normalised channels: a photo whose grey level encodes a scene's depth reads as that depth."""
    from renderkit.triton import IMAGENET_MEAN, IMAGENET_STD

    # pixel_values_c = (g / 255 - mean_c) / std_c, so g = 255 * (sum_c w_c x_c + k) for any w with
    # sum_c w_c / std_c = 1, and k = sum_c w_c mean_c / std_c.
    w = np.full(3, 1 / 3, np.float32) * IMAGENET_STD
    k = float(np.sum(w * IMAGENET_MEAN / IMAGENET_STD))
    weight = numpy_helper.from_array((w * 255 * per_level_m).reshape(1, 3, 1, 1).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.array([near_m + 255 * per_level_m * k], np.float32), "b")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["pixel_values", "w", "b"], ["conv"]),
            helper.make_node("Squeeze", ["conv", "axes"], ["metric_depth"]),
        ],
        "tiny_metric_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("metric_depth", TensorProto.FLOAT, ["N", "H", "W"])],
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


def diffusion_model() -> onnx.ModelProto:
    consts: dict[str, np.ndarray] = {
        "fx": np.array(0.11, np.float32),
        "fy": np.array(0.07, np.float32),
        "fs": np.array(0.37, np.float32),
        "fp": np.array(0.05, np.float32),
        "amp": np.array(0.35, np.float32),
        "half": np.array(0.5, np.float32),
        "one": np.array(1.0, np.float32),
        "phase": np.array([0.0, 2.1, 4.2], np.float32).reshape(1, 3, 1, 1),
        "ax2": np.array(2, np.int64),
        "ax3": np.array(3, np.int64),
        "shape4": np.array([-1, 1, 1, 1], np.int64),
    }
    nodes = [
        helper.make_node("Mul", ["mask", "half"], ["m0"]),
        helper.make_node("Sub", ["m0", "m0"], ["zero"]),
        helper.make_node("Add", ["zero", "one"], ["ones"]),
        helper.make_node("CumSum", ["ones", "ax3"], ["x"]),
        helper.make_node("CumSum", ["ones", "ax2"], ["y"]),
        helper.make_node("Cast", ["seed"], ["seed_f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["seed_f", "shape4"], ["seed4"]),
        helper.make_node("Cast", ["prompt_ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids_f"], ["ids_mean"], axes=[1], keepdims=1),
        helper.make_node("Reshape", ["ids_mean", "shape4"], ["ids4"]),
        helper.make_node("Mul", ["x", "fx"], ["ax"]),
        helper.make_node("Mul", ["y", "fy"], ["ay"]),
        helper.make_node("Mul", ["seed4", "fs"], ["as"]),
        helper.make_node("Mul", ["ids4", "fp"], ["ap"]),
        helper.make_node("Add", ["ax", "ay"], ["a1"]),
        helper.make_node("Add", ["a1", "as"], ["a2"]),
        helper.make_node("Add", ["a2", "ap"], ["a3"]),
        helper.make_node("Add", ["a3", "phase"], ["angle"]),
        helper.make_node("Sin", ["angle"], ["wave"]),
        helper.make_node("Mul", ["wave", "amp"], ["wave_a"]),
        helper.make_node("Add", ["wave_a", "half"], ["pattern"]),
        helper.make_node("Reshape", ["strength", "shape4"], ["strength4"]),
        helper.make_node("Mul", ["mask", "strength4"], ["alpha"]),
        helper.make_node("Sub", ["pattern", "image"], ["diff"]),
        helper.make_node("Mul", ["diff", "alpha"], ["step"]),
        helper.make_node("Add", ["image", "step"], ["generated"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_diffusion",
        [
            helper.make_tensor_value_info("prompt_ids", TensorProto.INT64, ["N", 77]),
            helper.make_tensor_value_info("seed", TensorProto.INT64, ["N", 1]),
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, "H", "W"]),
            helper.make_tensor_value_info("strength", TensorProto.FLOAT, ["N", 1]),
        ],
        [helper.make_tensor_value_info("generated", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def intrinsic_model() -> onnx.ModelProto:
    consts = {
        "std": IMAGENET_STD.reshape(1, 3, 1, 1),
        "mean": IMAGENET_MEAN.reshape(1, 3, 1, 1),
        "floor": np.array(1e-3, np.float32),
        "gamma": np.array(2.2, np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["pixel_values", "std"], ["scaled"]),
            helper.make_node("Add", ["scaled", "mean"], ["rgb"]),
            helper.make_node("ReduceMean", ["rgb"], ["grey"], axes=[1], keepdims=1),
            helper.make_node("Max", ["grey", "floor"], ["positive"]),
            helper.make_node("Pow", ["positive", "gamma"], ["linear"]),
            helper.make_node(
                "AveragePool", ["linear"], ["shading"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], count_include_pad=0
            ),
        ],
        "tiny_intrinsic",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("shading", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def write_tiny_models(models_dir: Path) -> None:
    """Installs MODELS_DIR/{depth,segmentation,intrinsic,diffusion}: the first three through `make
    models`' own install step (contract check, test run, layout, model card), diffusion as is."""
    with tempfile.TemporaryDirectory() as tmp:
        tiny = ((DEPTH, depth_model()), (SEGMENTATION, segmentation_model()), (INTRINSIC, intrinsic_model()))
        for contract, model in tiny:
            path = Path(tmp) / f"{contract.name}.onnx"
            _save(model, path)
            install(path, contract, models_dir)
    _save(diffusion_model(), models_dir / "diffusion" / "1" / "model.onnx")


def prompt_encoder_model() -> onnx.ModelProto:
    block = PROMPT_SIDE // 64
    weight = np.zeros((256, 3, 1, 1), np.float32)
    weight[np.arange(256), np.arange(256) % 3] = np.sqrt(3 / 256)  # distances as in colour space
    graph = helper.make_graph(
        [
            helper.make_node(
                "AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[block, block], strides=[block, block]
            ),
            helper.make_node("Conv", ["pooled", "w"], ["image_embeddings"]),
        ],
        "tiny_prompt_encoder",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, PROMPT_SIDE, PROMPT_SIDE])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, ["N", 256, 64, 64])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def prompt_decoder_model(threshold: float = 4.0) -> onnx.ModelProto:
    consts: dict[str, np.ndarray] = {
        "to_grid": np.array(2 / PROMPT_SIDE, np.float32),
        "one": np.array(1.0, np.float32),
        "two": np.array(2.0, np.float32),
        "far": np.array(1e4, np.float32),
        "threshold": np.array(threshold, np.float32),
        "axis1": np.array([1], np.int64),
        "axis2": np.array([2], np.int64),
        "flat": np.array([0, 256, -1], np.int64),
        "square": np.array([0, 1, 64, 64], np.int64),
        "scales": np.array([1, 1, 4, 4], np.float32),
        "candidate_scores": np.array([[0.9, 0.1]], np.float32),
    }
    nodes = [
        helper.make_node("Mul", ["point_coords", "to_grid"], ["g0"]),
        helper.make_node("Sub", ["g0", "one"], ["g1"]),
        helper.make_node("Unsqueeze", ["g1", "axis1"], ["grid"]),  # N x 1 x P x 2
        helper.make_node("GridSample", ["image_embeddings", "grid"], ["sampled"], align_corners=0),  # N x 256 x 1 x P
        helper.make_node("Squeeze", ["sampled", "axis2"], ["s0"]),
        helper.make_node("Transpose", ["s0"], ["at_points"], perm=[0, 2, 1]),  # N x P x 256
        helper.make_node("Reshape", ["image_embeddings", "flat"], ["cells"]),  # N x 256 x 4096
        helper.make_node("MatMul", ["at_points", "cells"], ["cross"]),  # N x P x 4096
        helper.make_node("Mul", ["cells", "cells"], ["c2"]),
        helper.make_node("ReduceSum", ["c2", "axis1"], ["cells_sq"], keepdims=1),  # N x 1 x 4096
        helper.make_node("Mul", ["at_points", "at_points"], ["p2"]),
        helper.make_node("ReduceSum", ["p2", "axis2"], ["points_sq"], keepdims=1),  # N x P x 1
        helper.make_node("Mul", ["cross", "two"], ["cross2"]),
        helper.make_node("Add", ["cells_sq", "points_sq"], ["sq"]),
        helper.make_node("Sub", ["sq", "cross2"], ["distance"]),
        helper.make_node("Equal", ["point_labels", "one"], ["positive"]),
        helper.make_node("Cast", ["positive"], ["positive_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "positive_f"], ["other"]),
        helper.make_node("Mul", ["other", "far"], ["penalty0"]),
        helper.make_node("Unsqueeze", ["penalty0", "axis2"], ["penalty"]),  # N x P x 1
        helper.make_node("Add", ["distance", "penalty"], ["d_masked"]),
        helper.make_node("ReduceMin", ["d_masked"], ["nearest"], axes=[1], keepdims=1),  # N x 1 x 4096
        helper.make_node("Sub", ["threshold", "nearest"], ["logit"]),
        helper.make_node("Reshape", ["logit", "square"], ["logit64"]),
        helper.make_node("Resize", ["logit64", "", "scales"], ["logit256"], mode="linear"),
        helper.make_node("Neg", ["logit256"], ["complement"]),
        helper.make_node("Concat", ["logit256", "complement"], ["mask_logits"], axis=1),
        helper.make_node("Mul", ["point_labels", "far"], ["l0"]),
        helper.make_node("ReduceSum", ["l0", "axis1"], ["l1"], keepdims=1),  # N x 1
        helper.make_node("Mul", ["l1", "one"], ["l2"]),
        helper.make_node("Sub", ["l2", "l2"], ["zero"]),
        helper.make_node("Add", ["zero", "candidate_scores"], ["iou_scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_prompt_decoder",
        [
            helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, ["N", 256, 64, 64]),
            helper.make_tensor_value_info("point_coords", TensorProto.FLOAT, ["N", "P", 2]),
            helper.make_tensor_value_info("point_labels", TensorProto.FLOAT, ["N", "P"]),
        ],
        [
            helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, ["N", "K", 256, 256]),
            helper.make_tensor_value_info("iou_scores", TensorProto.FLOAT, ["N", "K"]),
        ],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def write_tiny_prompt_models(models_dir: Path) -> None:
    """Installs MODELS_DIR/prompt_segmentation_{encoder,decoder} through `make models`' install step."""
    with tempfile.TemporaryDirectory() as tmp:
        for contract, model in ((PROMPT_ENCODER, prompt_encoder_model()), (PROMPT_DECODER, prompt_decoder_model())):
            path = Path(tmp) / f"{contract.name}.onnx"
            _save(model, path)
            install(path, contract, models_dir)
