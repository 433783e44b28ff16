"""make models' install step on tiny graphs of the contracts' signatures (the torch export needs
the internet for weights; see test_export_needs_torch_and_says_so)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from devstack.model_export import (
    PRETRAINED,
    PROMPT_PRETRAINED,
    ExportError,
    export_pretrained,
    export_prompt_segmentation,
    install,
    main,
)
from renderkit.triton import DEPTH, PROMPT_DECODER, PROMPT_ENCODER, REPOSITORY, SEGMENTATION, read_config
from tests.tiny_models import (
    depth_model,
    intrinsic_model,
    prompt_decoder_model,
    prompt_encoder_model,
    segmentation_model,
)


def saved(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_install_lays_out_a_triton_model_with_its_card(tmp_path: Path) -> None:
    card = PRETRAINED["depth-anything-v2-small"]
    target = install(saved(depth_model(), tmp_path / "d.onnx"), DEPTH, tmp_path / "models", card)
    assert target == tmp_path / "models" / "depth" / "1" / "model.onnx"
    assert read_config(tmp_path / "models" / "depth" / "config.pbtxt") == read_config(
        REPOSITORY / "depth" / "config.pbtxt"
    )
    text = (tmp_path / "models" / "depth" / "MODEL.md").read_text()
    assert "Apache-2.0" in text and "depth-anything/Depth-Anything-V2-Small-hf" in text
    assert hashlib.sha256(target.read_bytes()).hexdigest() in text


def conv_model(output: str, classes: int, batch: int | str = "N", datatype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((classes, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "w"], [output])],
        "bad",
        [helper.make_tensor_value_info("pixel_values", datatype, [batch, 3, "H", "W"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, classes, "H", "W"])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize(
    "model, message",
    [
        (conv_model("scores", 150), "outputs are ['scores'], the contract's ['logits']"),
        (conv_model("logits", 19), "output logits dimension 1 is 19, the contract's 150"),
        (conv_model("logits", 150, batch=1), "fixed batch of 1"),
    ],
)
def test_install_refuses_a_model_that_breaks_the_contract(tmp_path: Path, model: onnx.ModelProto, message: str) -> None:
    with pytest.raises(ExportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        install(saved(model, tmp_path / "m.onnx"), SEGMENTATION, tmp_path / "models")
    assert not (tmp_path / "models" / "segmentation" / "1" / "model.onnx").exists()


def test_install_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not a valid ONNX model"):
        install(tmp_path / "m.onnx", SEGMENTATION, tmp_path / "models")


def test_a_reinstall_replaces_the_model(tmp_path: Path) -> None:
    install(saved(segmentation_model(), tmp_path / "a.onnx"), SEGMENTATION, tmp_path / "models")
    first = (tmp_path / "models" / "segmentation" / "1" / "model.onnx").read_bytes()
    changed = segmentation_model()
    changed.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros(150, np.float32), "b"))  # other biases
    install(saved(changed, tmp_path / "b.onnx"), SEGMENTATION, tmp_path / "models")
    assert (tmp_path / "models" / "segmentation" / "1" / "model.onnx").read_bytes() != first


def test_every_pretrained_model_states_its_licence_and_fits_a_contract() -> None:
    assert {card.contract.name for card in PRETRAINED.values()} == {"segmentation", "depth"}
    for card in PRETRAINED.values():
        assert card.licence and card.licence_url.startswith("https://") and "/" in card.source


def test_export_needs_torch_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ExportError, match=r"pip install -e '\.\[export\]'"):
            export_pretrained(PRETRAINED["depth-anything-v2-small"], tmp_path / "m.onnx")
        assert main(["--models-dir", str(tmp_path / "models")]) == 1
        assert "needs torch and transformers" in capsys.readouterr().err
    else:
        pytest.skip("torch is installed: test_export_of_tiny_random_models covers the export")


def test_export_of_tiny_random_models(tmp_path: Path) -> None:
    """Where torch and transformers are installed: tiny random UperNet and Depth Anything models go
    through the same export and install as the published weights."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    segmentation = transformers.UperNetConfig(
        backbone_config=transformers.ConvNextConfig(
            hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
        ),
        hidden_size=16,
        auxiliary_in_channels=32,
        num_labels=150,
    )
    depth = transformers.DepthAnythingConfig(
        backbone_config=transformers.Dinov2Config(
            hidden_size=24,
            num_hidden_layers=4,
            num_attention_heads=2,
            image_size=70,
            patch_size=14,
            out_features=["stage1", "stage2", "stage3", "stage4"],
            reshape_hidden_states=False,
        ),
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
        head_hidden_size=8,
        reassemble_hidden_size=24,
    )
    for key, config in (("upernet-convnext-tiny-ade20k", segmentation), ("depth-anything-v2-small", depth)):
        card = PRETRAINED[key]
        exported = export_pretrained(card, tmp_path / f"{key}.onnx", config=config)
        install(exported, card.contract, tmp_path / "models", card)


def test_the_prompt_segmentation_models_install_as_two_triton_models(tmp_path: Path) -> None:
    card = PROMPT_PRETRAINED["mobile-sam"]
    for contract, model in ((PROMPT_ENCODER, prompt_encoder_model()), (PROMPT_DECODER, prompt_decoder_model())):
        target = install(saved(model, tmp_path / f"{contract.name}.onnx"), contract, tmp_path / "models", card)
        assert target == tmp_path / "models" / contract.name / "1" / "model.onnx"
        assert read_config(target.parent.parent / "config.pbtxt") == read_config(
            REPOSITORY / contract.name / "config.pbtxt"
        )
        text = (target.parent.parent / "MODEL.md").read_text()
        assert "dhkim2810/MobileSAM" in text and "Apache-2.0" in text


def test_a_decoder_that_breaks_the_prompt_contract_is_refused(tmp_path: Path) -> None:
    model = prompt_decoder_model()
    model.graph.output[1].name = "scores"
    model.graph.node[-1].output[0] = "scores"
    with pytest.raises(ExportError, match=r"outputs are \['mask_logits', 'scores'\]"):
        install(saved(model, tmp_path / "d.onnx"), PROMPT_DECODER, tmp_path / "models")


def test_the_prompt_export_says_what_it_needs(tmp_path: Path) -> None:
    card = PROMPT_PRETRAINED["mobile-sam"]
    assert card.licence and card.licence_url.startswith("https://") and "/" in card.source
    if importlib.util.find_spec("torch") and importlib.util.find_spec("mobile_sam"):
        pytest.skip("torch and mobile_sam are installed: the export itself needs the weights")
    with pytest.raises(ExportError, match="needs torch and the mobile_sam package: pip install timm"):
        export_prompt_segmentation(card, tmp_path)


def test_an_intrinsic_model_you_exported_installs_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make models MODELS_ARGS="--intrinsic model.onnx"`: the contract check and the layout, no
    download of the other models."""
    models = tmp_path / "models"
    mine = saved(intrinsic_model(), tmp_path / "mine.onnx")
    assert main(["--intrinsic", str(mine), "--models-dir", str(models)]) == 0
    assert (models / "intrinsic" / "1" / "model.onnx").exists()
    assert read_config(models / "intrinsic" / "config.pbtxt").name == "intrinsic"
    assert "installed from mine.onnx" in (models / "intrinsic" / "MODEL.md").read_text()
    assert sorted(p.name for p in models.iterdir()) == ["intrinsic"]
    # A depth model is not an intrinsic one: refused, with the contract's complaint.
    assert main(["--intrinsic", str(saved(depth_model(), tmp_path / "depth.onnx")), "--models-dir", str(models)]) == 1
    assert "does not fit the intrinsic contract" in capsys.readouterr().err
