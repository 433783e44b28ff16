"""make models: pretrained segmentation, depth and prompt segmentation models exported to ONNX,
checked, and installed for Triton.

Two steps, kept apart so that the second is exercised wherever the first cannot run:

1. export_pretrained: loads a named Hugging Face model with transformers (torch needed; the
   `export` extra) and writes it to ONNX with the tensor names and dynamic axes of the pipeline's
   contract (renderkit.triton). export_prompt_segmentation does the same for a Segment Anything
   model (MobileSAM: its own package, see PROMPT_PRETRAINED) as two models, an image encoder and a
   prompt decoder. This needs the internet for the weights.
2. install: checks an ONNX graph against the contract (names, types, ranks, fixed dimensions, a
   dynamic batch), runs it once with onnxruntime, and lays it out as a Triton model:
   MODELS_DIR/<name>/1/model.onnx beside a copy of deploy/triton/model_repository/<name>/config.pbtxt
   and a MODEL.md naming the source, its licence and the file's SHA-256. MODELS_DIR is then a
   complete model repository for `tritonserver --model-repository`, and what the embedded Triton
   (services.triton_host) serves.

The tests install tiny ONNX graphs of the same signatures with step 2, and the embedded Triton
serves them to the services end to end.

An intrinsic decomposition model (renderkit.triton.INTRINSIC, for the projection stage's light) is
installed from an ONNX file you export yourself (`--intrinsic PATH`: step 2 alone). Its published
reference, the ordinal-shading models of Careaga and Aksoy, ships its weights outside the model
hubs this step can reach, and wants a wrapper to the contract: ImageNet-normalised RGB in, one
channel of linear shading out.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from renderkit.triton import (
    DEPTH,
    INTRINSIC,
    METRIC_DEPTH,
    PROMPT_DECODER,
    PROMPT_ENCODER,
    REPOSITORY,
    SEGMENTATION,
    ModelContract,
    TensorSpec,
    datatype_name,
    read_config,
)

_ONNX_TYPES = {1: "FP32", 10: "FP16", 7: "INT64", 6: "INT32", 2: "UINT8"}
OPSET = 17


class ExportError(RuntimeError):
    """The model cannot be exported or does not fit the pipeline's contract."""


@dataclass(frozen=True)
class Pretrained:
    """A published model the pipeline can serve, and the terms it comes under."""

    key: str
    contract: ModelContract
    source: str  # Hugging Face model id
    licence: str
    licence_url: str
    about: str


PRETRAINED = {
    model.key: model
    for model in (
        Pretrained(
            key="upernet-convnext-tiny-ade20k",
            contract=SEGMENTATION,
            source="openmmlab/upernet-convnext-tiny",
            licence="MIT",
            licence_url="https://huggingface.co/openmmlab/upernet-convnext-tiny",
            about="UperNet with a ConvNeXt-T backbone, trained on ADE20K (150 classes, 46.1 mIoU)",
        ),
        Pretrained(
            key="segformer-b0-ade20k",
            contract=SEGMENTATION,
            source="nvidia/segformer-b0-finetuned-ade-512-512",
            licence="NVIDIA Source Code License for SegFormer (non-commercial use only)",
            licence_url="https://github.com/NVlabs/SegFormer/blob/master/LICENSE",
            about="SegFormer-B0 trained on ADE20K: 3.7 M parameters, fast, but not for commercial use",
        ),
        Pretrained(
            key="depth-anything-v2-metric-indoor-small",
            contract=METRIC_DEPTH,
            source="depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
            licence="Apache-2.0 (the Depth Anything V2 metric release)",
            licence_url="https://huggingface.co/depth-anything/Depth-Anything-V2-Metric-VKITTI-Large",
            about="Depth Anything V2 Small fine-tuned on Hypersim: depth in metres indoors, so planes are metric",
        ),
        Pretrained(
            key="depth-anything-v2-small",
            contract=DEPTH,
            source="depth-anything/Depth-Anything-V2-Small-hf",
            licence="Apache-2.0",
            licence_url="https://huggingface.co/depth-anything/Depth-Anything-V2-Small-hf",
            about="Depth Anything V2 Small (24.8 M parameters): relative inverse depth",
        ),
    )
}
DEFAULTS = {"segmentation": "upernet-convnext-tiny-ade20k", "depth": "depth-anything-v2-small"}


@dataclass(frozen=True)
class PromptPretrained:
    """A published Segment Anything model, exported as the two prompt segmentation models."""

    key: str
    source: str  # Hugging Face repository of the checkpoint
    weights: str  # the checkpoint's file in it
    package: str  # the Python package with the model's code (segment_anything's API)
    install_hint: str
    registry_key: str  # its sam_model_registry entry
    licence: str
    licence_url: str
    about: str


PROMPT_PRETRAINED = {
    model.key: model
    for model in (
        PromptPretrained(
            key="mobile-sam",
            source="dhkim2810/MobileSAM",
            weights="mobile_sam.pt",
            package="mobile_sam",
            install_hint="pip install timm git+https://github.com/ChaoningZhang/MobileSAM.git",
            registry_key="vit_t",
            licence="Apache-2.0 (the MobileSAM code and weights)",
            licence_url="https://github.com/ChaoningZhang/MobileSAM/blob/master/LICENSE",
            about="MobileSAM: SAM's prompt decoder on a TinyViT encoder (5.8 M parameters), about 10 ms on a GPU",
        ),
    )
}
PROMPT_DEFAULT = "mobile-sam"


def contract_problems(model: Any, contract: ModelContract) -> list[str]:
    """Why an onnx.ModelProto cannot serve a contract (empty when it can)."""
    problems = []
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    for kind, specs, values in (
        ("input", contract.inputs, [v for v in graph.input if v.name not in initializers]),
        ("output", contract.outputs, list(graph.output)),
    ):
        found = {v.name: v for v in values}
        if sorted(found) != sorted(s.name for s in specs):
            problems.append(f"{kind}s are {sorted(found)}, the contract's {sorted(s.name for s in specs)}")
            continue
        for spec in specs:
            tensor = found[spec.name].type.tensor_type
            datatype = _ONNX_TYPES.get(tensor.elem_type, str(tensor.elem_type))
            if datatype != spec.datatype:
                problems.append(f"{kind} {spec.name} is {datatype}, the contract's {spec.datatype}")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            if len(dims) != len(spec.dims) + 1:
                problems.append(f"{kind} {spec.name} has rank {len(dims)}, the contract's {len(spec.dims) + 1}")
                continue
            if dims[0] != -1:
                problems.append(f"{kind} {spec.name} has a fixed batch of {dims[0]}; Triton batches dynamically")
            for index, (got, want) in enumerate(zip(dims[1:], spec.dims, strict=True), start=1):
                if want != -1 and got != want:
                    problems.append(f"{kind} {spec.name} dimension {index} is {got}, the contract's {want}")
    return problems


def sample_input(spec: TensorSpec) -> np.ndarray:
    """A zero batch of one for an input: images 70 px square (a multiple of Depth Anything's 14 px
    patch, and small), two of anything else of free size (two prompt points)."""
    free = 70 if len(spec.dims) == 3 else 2
    shape = (1, *(free if d == -1 else d for d in spec.dims))
    return np.zeros(shape, {"FP32": np.float32, "INT64": np.int64}[spec.datatype])


def install(
    onnx_path: Path, contract: ModelContract, models_dir: Path, card: Pretrained | PromptPretrained | None = None
) -> Path:
    """Checks an ONNX model against its contract, runs it once, and installs it as a Triton model."""
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(onnx_path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several unrelated types
        raise ExportError(f"{onnx_path} is not a valid ONNX model: {exc}") from exc
    problems = contract_problems(model, contract)
    if problems:
        raise ExportError(f"{onnx_path} does not fit the {contract.name} contract: " + "; ".join(problems))
    # One inference on a small input: the graph must run and give finite values of the right rank.
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {spec.name: sample_input(spec) for spec in contract.inputs}
    for spec, value in zip(contract.outputs, session.run([s.name for s in contract.outputs], feeds), strict=True):
        if value.ndim != len(spec.dims) + 1 or not np.all(np.isfinite(value)):
            raise ExportError(f"{onnx_path}: output {spec.name} has shape {value.shape} or non-finite values")
    folder = models_dir / contract.name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    target = folder / "1" / "model.onnx"
    with (
        open(onnx_path, "rb") as source,
        tempfile.NamedTemporaryFile(dir=folder / "1", prefix=".model-", delete=False) as tmp,
    ):
        shutil.copyfileobj(source, tmp)
    os.replace(tmp.name, target)
    write_config(contract, folder / "config.pbtxt")
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    lines = [f"# {contract.name}", ""]
    if card is not None:
        lines += [
            f"- model: {card.key} ({card.about})",
            f"- source: https://huggingface.co/{card.source}",
            f"- licence: {card.licence} ({card.licence_url})",
        ]
    else:
        lines.append(f"- model: installed from {onnx_path.name} (no published source recorded)")
    lines += [f"- sha256: {digest}", f"- installed: {datetime.now(UTC).isoformat(timespec='seconds')}", ""]
    (folder / "MODEL.md").write_text("\n".join(lines))
    return target


def write_config(contract: ModelContract, path: Path) -> None:
    """The repository's config.pbtxt for the model, its outputs those of the contract (a metric depth
    model declares metric_depth where a relative one declares predicted_depth)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    source = REPOSITORY / contract.name / "config.pbtxt"
    config = read_config(source)
    declared = [(o.name, datatype_name(o.data_type), tuple(o.dims)) for o in config.output]
    if declared == [(s.name, s.datatype, s.dims) for s in contract.outputs]:
        shutil.copyfile(source, path)
        return
    del config.output[:]
    for spec in contract.outputs:
        config.output.add(
            name=spec.name, data_type=model_config_pb2.DataType.Value(f"TYPE_{spec.datatype}"), dims=list(spec.dims)
        )
    path.write_text(f"# {contract.name}: written by make models\n" + text_format.MessageToString(config))


def export_pretrained(card: Pretrained, out: Path, config: Any = None) -> Path:
    """Exports a Hugging Face model to ONNX under the contract's tensor names.

    With config (a transformers config), a randomly initialised model of that architecture is
    exported instead of the published weights (no download).
    """
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ExportError(
            "exporting needs torch and transformers: pip install -e '.[export]' (and the internet for the weights)"
        ) from exc
    auto = (
        transformers.AutoModelForSemanticSegmentation
        if card.contract is SEGMENTATION
        else transformers.AutoModelForDepthEstimation
    )
    model = auto.from_config(config) if config is not None else auto.from_pretrained(card.source)
    model.eval()
    attribute = "logits" if card.contract is SEGMENTATION else "predicted_depth"

    class Contract(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return getattr(self.inner(pixel_values=pixel_values), attribute)

    size = card.contract.input_size
    output_name = card.contract.outputs[0].name
    spatial = {0: "N", 2: "H", 3: "W"} if card.contract is SEGMENTATION else {0: "N", 1: "H", 2: "W"}
    torch.onnx.export(
        Contract(model),
        (torch.zeros(1, 3, size, size),),
        str(out),
        input_names=["pixel_values"],
        output_names=[output_name],
        dynamic_axes={"pixel_values": {0: "N", 2: "H", 3: "W"}, output_name: spatial},
        opset_version=OPSET,
    )
    return out


def export_prompt_segmentation(card: PromptPretrained, out_dir: Path, sam: Any = None) -> tuple[Path, Path]:
    """Exports a Segment Anything model (segment_anything's API: image_encoder, prompt_encoder,
    mask_decoder) as the prompt segmentation contract's encoder and decoder ONNX files.

    The decoder is the package's own ONNX wrapper (SamOnnxModel: points embedded as SAM's
    predictor does, labels 2 and 3 a box's corners, -1 padding) without a mask prompt, giving all
    its candidates (the single-mask answer and the three of multimask output) with their predicted
    IoU at 256 x 256. With sam (a model object), that one is exported instead of the published
    checkpoint (no download).
    """
    try:
        import importlib

        import torch

        package = importlib.import_module(card.package)
        onnx_wrappers = importlib.import_module(f"{card.package}.utils.onnx")
    except ImportError as exc:
        raise ExportError(
            f"exporting {card.key} needs torch and the {card.package} package: {card.install_hint} "
            "(and the internet for the weights)"
        ) from exc
    if sam is None:
        hub = importlib.import_module("huggingface_hub")  # comes with transformers (the export extra)
        checkpoint = hub.hf_hub_download(card.source, card.weights)
        sam = package.sam_model_registry[card.registry_key](checkpoint=checkpoint)
    sam.eval()

    class Encoder(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return self.inner.image_encoder(pixel_values)

    class Decoder(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = onnx_wrappers.SamOnnxModel(inner, return_single_mask=False)

        def forward(self, image_embeddings: Any, point_coords: Any, point_labels: Any) -> Any:
            no_mask = torch.zeros(1, 1, 256, 256)
            frame = torch.tensor([float(PROMPT_ENCODER.input_size)] * 2)
            _, scores, masks = self.inner(image_embeddings, point_coords, point_labels, no_mask, torch.zeros(1), frame)
            return masks, scores

    side = PROMPT_ENCODER.input_size
    encoder_path, decoder_path = out_dir / "encoder.onnx", out_dir / "decoder.onnx"
    with torch.no_grad():
        torch.onnx.export(
            Encoder(sam),
            (torch.zeros(1, 3, side, side),),
            str(encoder_path),
            input_names=["pixel_values"],
            output_names=["image_embeddings"],
            dynamic_axes={"pixel_values": {0: "N"}, "image_embeddings": {0: "N"}},
            opset_version=OPSET,
        )
        torch.onnx.export(
            Decoder(sam),
            (torch.zeros(1, 256, 64, 64), torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]])),
            str(decoder_path),
            input_names=["image_embeddings", "point_coords", "point_labels"],
            output_names=["mask_logits", "iou_scores"],
            dynamic_axes={
                "image_embeddings": {0: "N"},
                "point_coords": {0: "N", 1: "P"},
                "point_labels": {0: "N", 1: "P"},
                "mask_logits": {0: "N", 1: "K"},
                "iou_scores": {0: "N", 1: "K"},
            },
            opset_version=OPSET,
        )
    return encoder_path, decoder_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make models", description=__doc__.split("\n\n")[0])
    for kind, contracts in (("segmentation", (SEGMENTATION,)), ("depth", (DEPTH, METRIC_DEPTH))):
        choices = sorted(k for k, card in PRETRAINED.items() if card.contract in contracts)
        parser.add_argument(f"--{kind}", default=DEFAULTS[kind], choices=choices)
    parser.add_argument(
        "--prompt-segmentation",
        default=PROMPT_DEFAULT,
        choices=[*sorted(PROMPT_PRETRAINED), "none"],
        help="the Segment Anything model for clicks and boxes (none: the model-free path serves them)",
    )
    parser.add_argument(
        "--intrinsic",
        type=Path,
        metavar="ONNX",
        help="install this intrinsic decomposition model (an ONNX export of the intrinsic contract) and nothing else",
    )
    parser.add_argument("--models-dir", type=Path, default=Path(os.environ.get("MODELS_DIR", "models")))
    parser.add_argument("--list", action="store_true", help="list the models and their licences")
    args = parser.parse_args(argv)
    if args.list:
        for card in PRETRAINED.values():
            print(f"{card.key:<30} {card.contract.name:<13} {card.licence}\n{'':<30} {card.about}")
        for prompt in PROMPT_PRETRAINED.values():
            print(f"{prompt.key:<30} {'prompt':<13} {prompt.licence}\n{'':<30} {prompt.about}")
        return 0
    if args.intrinsic is not None:
        try:
            print(f"  installed {install(args.intrinsic, INTRINSIC, args.models_dir)}")
        except ExportError as exc:
            print(f"make models: {exc}", file=sys.stderr)
            return 1
        return 0
    for key in (args.segmentation, args.depth):
        card = PRETRAINED[key]
        print(f"{card.contract.name}: {card.key} from {card.source} ({card.licence})", flush=True)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                exported = export_pretrained(card, Path(tmp) / "model.onnx")
                target = install(exported, card.contract, args.models_dir, card)
        except ExportError as exc:
            print(f"make models: {exc}", file=sys.stderr)
            return 1
        print(f"  installed {target}")
    if args.prompt_segmentation != "none":
        prompt = PROMPT_PRETRAINED[args.prompt_segmentation]
        print(f"prompt segmentation: {prompt.key} from {prompt.source} ({prompt.licence})", flush=True)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                encoder, decoder = export_prompt_segmentation(prompt, Path(tmp))
                for path, contract in ((encoder, PROMPT_ENCODER), (decoder, PROMPT_DECODER)):
                    print(f"  installed {install(path, contract, args.models_dir, prompt)}")
        except ExportError as exc:
            print(f"make models: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
