"""The one way the pipeline talks to Triton: model contracts and a client that raises on any error."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as triton_aio
from google.protobuf import text_format
from opentelemetry import metrics
from opentelemetry.trace import SpanKind, Status, StatusCode
from tritonclient.grpc import InferInput, InferRequestedOutput, model_config_pb2
from tritonclient.utils import InferenceServerException

from renderkit import telemetry
from renderkit.tls import ClientCertificates

log = logging.getLogger(__name__)
INFERENCE_DURATION = metrics.get_meter("render.triton").create_histogram(
    "render.triton.inference.duration", unit="s", description="Time of one Triton inference, by model and outcome."
)

REPOSITORY = Path(__file__).resolve().parent.parent / "deploy" / "triton" / "model_repository"


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of a model's contract; dims exclude the batch dimension."""

    name: str
    datatype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelContract:
    """The tensors a model takes and gives, as the client expects them."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_size: int  # the square side the service resizes images to before inference


DEPTH = ModelContract(
    name="depth",
    inputs=(TensorSpec("pixel_values", "FP32", (3, -1, -1)),),
    outputs=(TensorSpec("predicted_depth", "FP32", (-1, -1)),),
    input_size=518,
)
# A metric depth model serves under the same name with this output instead: depth along the
# optical axis in metres (Depth Anything V2 Metric). The depth service tells them apart by the
# model's declared outputs.
METRIC_DEPTH = ModelContract(
    name="depth",
    inputs=DEPTH.inputs,
    outputs=(TensorSpec("metric_depth", "FP32", (-1, -1)),),
    input_size=518,
)
SEGMENTATION = ModelContract(
    name="segmentation",
    inputs=(TensorSpec("pixel_values", "FP32", (3, -1, -1)),),
    outputs=(TensorSpec("logits", "FP32", (150, -1, -1)),),
    input_size=512,
)
# Image generation and inpainting. The prompt travels as byte-level token ids (UTF-8 bytes + 1, zero
# padded, ByT5-style), so no tokenizer files are needed on either side; the model embeds them itself.
DIFFUSION = ModelContract(
    name="diffusion",
    inputs=(
        TensorSpec("prompt_ids", "INT64", (77,)),
        TensorSpec("seed", "INT64", (1,)),
        TensorSpec("image", "FP32", (3, -1, -1)),
        TensorSpec("mask", "FP32", (1, -1, -1)),
        TensorSpec("strength", "FP32", (1,)),
    ),
    outputs=(TensorSpec("generated", "FP32", (3, -1, -1)),),
    input_size=512,
)
# Prompt segmentation (the Segment Anything family: MobileSAM, EfficientSAM, SlimSAM), two models.
# The encoder sees the photo once: RGB with its longer side resized to PROMPT_SIDE, normalised as
# ImageNet, zero-padded at the bottom and right to a square. The decoder takes its embeddings and
# the prompts in that frame: clicks (label 1 on the surface, 0 off it) and a box as two corner
# points (labels 2 and 3, SAM's convention); without a box, one padding point labelled -1. It gives
# K candidate masks as logits over the padded square at a quarter of its side, and the IoU each
# expects to have; the service takes the best.
PROMPT_SIDE = 1024
PROMPT_ENCODER = ModelContract(
    name="prompt_segmentation_encoder",
    inputs=(TensorSpec("pixel_values", "FP32", (3, PROMPT_SIDE, PROMPT_SIDE)),),
    outputs=(TensorSpec("image_embeddings", "FP32", (256, 64, 64)),),
    input_size=PROMPT_SIDE,
)
PROMPT_DECODER = ModelContract(
    name="prompt_segmentation_decoder",
    inputs=(
        TensorSpec("image_embeddings", "FP32", (256, 64, 64)),
        TensorSpec("point_coords", "FP32", (-1, 2)),
        TensorSpec("point_labels", "FP32", (-1,)),
    ),
    outputs=(
        TensorSpec("mask_logits", "FP32", (-1, PROMPT_SIDE // 4, PROMPT_SIDE // 4)),
        TensorSpec("iou_scores", "FP32", (-1,)),
    ),
    input_size=PROMPT_SIDE,
)
POSITIVE, NEGATIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT, PADDING = 1.0, 0.0, 2.0, 3.0, -1.0
# Intrinsic decomposition: the photo's light apart from its surfaces' colours (the ordinal-shading
# models of Careaga and Aksoy are a published reference). In: the photo resized to a square of
# input_size, normalised as ImageNet. Out: its shading at the same size, one channel of linear
# light at any scale (the projection stage normalises it to the surface's typical light).
INTRINSIC = ModelContract(
    name="intrinsic",
    inputs=(TensorSpec("pixel_values", "FP32", (3, -1, -1)),),
    outputs=(TensorSpec("shading", "FP32", (1, -1, -1)),),
    input_size=512,
)
CONTRACTS = {c.name: c for c in (DEPTH, SEGMENTATION, DIFFUSION, PROMPT_ENCODER, PROMPT_DECODER, INTRINSIC)}
PROMPT_IDS = 77


def prompt_ids(prompt: str) -> np.ndarray:
    """A prompt as the diffusion contract's 1x77 byte-level token ids."""
    data = prompt.encode("utf-8")[:PROMPT_IDS]
    ids = np.zeros((1, PROMPT_IDS), np.int64)
    ids[0, : len(data)] = np.frombuffer(data, np.uint8).astype(np.int64) + 1
    return ids


# ImageNet normalisation, what both exported models were trained with.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class TritonError(RuntimeError):
    """Triton could not be reached or refused an inference; the message is safe to show (the
    client library's own message, which names addresses, goes to the log). timed_out: the
    inference ran past its deadline."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class ModelOutputError(TritonError):
    """A model answered with what its contract does not allow: another number of dimensions, a
    size the contract fixes that differs, an empty one, or values that are not finite; or it
    failed while running on this input (Triton's INTERNAL: its backend raised). The model's
    fault, which asking again does not mend: the stage uses its classical path where it has one."""


# An INTERNAL that is not about this input: the GPU out of memory under load (ONNX Runtime's arena,
# a CUDA allocation, a batch of other requests too large together), or the connection reset on
# its way (gRPC's RST_STREAM). Asked again, it is answered: it stays a TritonError (UNAVAILABLE,
# retried), not the model's fault.
_TRANSIENT = re.compile(
    r"out of memory|failed to allocate|cuda failure|cudaErrorMemoryAllocation|\bOOM\b|RST_STREAM", re.IGNORECASE
)


def output_problem(spec: TensorSpec, array: np.ndarray) -> str | None:
    """What is wrong with a model's output against its contract (dims after the batch's), or None."""
    if array.ndim != len(spec.dims) + 1 or array.shape[0] < 1:
        return f"has shape {array.shape}, not (batch, {', '.join(str(d) for d in spec.dims)})"
    for have, want in zip(array.shape[1:], spec.dims, strict=True):
        if have < 1 or (want >= 0 and have != want):
            return f"has shape {array.shape}, not (batch, {', '.join(str(d) for d in spec.dims)})"
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return "holds values that are not finite"
    return None


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parses a config.pbtxt."""
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


def datatype_name(data_type: int) -> str:
    """TYPE_FP32 -> "FP32", the spelling the inference protocol uses."""
    return str(model_config_pb2.DataType.Name(data_type)).removeprefix("TYPE_")  # type: ignore[arg-type]


def to_pixel_values(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """A BGR uint8 image as a normalised 1x3xSxS float32 batch."""
    import cv2

    rgb = cv2.cvtColor(cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def to_prompt_pixel_values(image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
    """A BGR uint8 image as the prompt encoder's 1x3xSxS batch (longer side resized to S, ImageNet
    normalisation, zero padding at the bottom and right), and the resize factor."""
    import cv2

    height, width = image_bgr.shape[:2]
    scale = PROMPT_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.cvtColor(cv2.resize(image_bgr, size, interpolation=interpolation), cv2.COLOR_BGR2RGB)
    batch = np.zeros((1, 3, PROMPT_SIDE, PROMPT_SIDE), np.float32)
    normalised = (rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    batch[0, :, : size[1], : size[0]] = normalised.transpose(2, 0, 1)
    return batch, scale


def prompt_points(
    positives: np.ndarray, negatives: np.ndarray, box: tuple[float, float, float, float] | None, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks and a box (photo pixels) as the decoder's 1xNx2 point_coords and 1xN point_labels, in
    the encoder's frame."""
    coords = [*(tuple(p) for p in positives), *(tuple(p) for p in negatives)]
    labels = [POSITIVE] * len(positives) + [NEGATIVE] * len(negatives)
    if box is not None:
        coords += [(box[0], box[1]), (box[2], box[3])]
        labels += [BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]
    else:
        coords.append((0.0, 0.0))
        labels.append(PADDING)
    points = np.array(coords, np.float32).reshape(1, -1, 2) * np.float32(scale)
    return points, np.array(labels, np.float32).reshape(1, -1)


# A replaced client (a certificate rotation, or its age) is closed once its calls have ended, and
# at the latest this long after, so inferences already running on it finish (longer than any
# stage's deadline); its calls are looked at this often.
RETIRED_CLIENT_GRACE_S = 600.0
RETIRED_CLIENT_POLL_S = 1.0
# A client is replaced by a new one this often (at the next health probe), as the stages' own
# servers end a connection after INTERNAL_CONNECTION_AGE_MS: tritonserver ends none, so a stage's
# one connection through Triton's Service stayed with the replica it first reached, and a Triton
# rollout or one replica's restart left every stage on one replica for good. A new connection is
# placed afresh by the Service (kube-proxy), so the stages' connections spread again within this.
CLIENT_MAX_AGE_S = 60.0


def channel_args() -> list[tuple[str, int | str]]:
    """tritonclient's own channel arguments, and a subchannel pool of each client's own (a process
    shares one connection per address between channels otherwise, so a new client would reuse the
    old one's connection, to the same replica)."""
    keepalive = triton_aio.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", triton_aio.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", triton_aio.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(keepalive.keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.use_local_subchannel_pool", 1),
    ]


class TritonModels:
    """An async tritonclient wrapper; every failure surfaces as TritonError.

    With `tls`, the client presents that certificate and verifies Triton's (mutual TLS); when the
    files change, and every `max_age_s` (both looked at with every health probe), new calls go
    through a new client.
    """

    def __init__(self, url: str, tls: ClientCertificates | None = None, max_age_s: float = CLIENT_MAX_AGE_S) -> None:
        self.url = url
        self._tls = tls
        self.max_age_s = max_age_s
        self._client = self._connect()
        self._connected_at = time.monotonic()
        self._seen_ready: set[str] = set()
        self._retired: list[triton_aio.InferenceServerClient] = []
        self._closers: set[asyncio.Task[None]] = set()
        # Calls in flight per client, so a replaced one closes once they have ended.
        self._calls: collections.Counter[triton_aio.InferenceServerClient] = collections.Counter()

    def _connect(self) -> triton_aio.InferenceServerClient:
        if self._tls is None:
            return triton_aio.InferenceServerClient(self.url, channel_args=channel_args())
        return triton_aio.InferenceServerClient(self.url, creds=self._tls.credentials(), channel_args=channel_args())

    def _renew_client(self) -> None:
        """A new client when the certificate files changed, or when the client is max_age_s old;
        the old one closes once its calls have ended."""
        rotated = self._tls is not None and self._tls.reload_if_changed()
        if not rotated and time.monotonic() - self._connected_at < self.max_age_s:
            return
        old, self._client = self._client, self._connect()
        self._connected_at = time.monotonic()
        self._retired.append(old)

        async def close_later() -> None:
            deadline = time.monotonic() + RETIRED_CLIENT_GRACE_S
            while self._calls[old] and time.monotonic() < deadline:
                await asyncio.sleep(RETIRED_CLIENT_POLL_S)
            self._retired.remove(old)
            await old.close()

        task = asyncio.get_running_loop().create_task(close_later())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    @contextlib.contextmanager
    def _using(self) -> Iterator[triton_aio.InferenceServerClient]:
        """The current client, its call counted until the block ends."""
        client = self._client
        self._calls[client] += 1
        try:
            yield client
        finally:
            self._calls[client] -= 1
            if not self._calls[client]:
                del self._calls[client]

    async def close(self) -> None:
        """Closes the channel (and any replaced and not yet closed)."""
        for task in list(self._closers):
            task.cancel()
        await asyncio.gather(*self._closers, return_exceptions=True)
        for client in [*self._retired, self._client]:
            await client.close()
        self._retired.clear()

    async def server_live(self) -> bool:
        """Whether the Triton server answers."""
        try:
            with self._using() as client:
                return bool(await client.is_server_live(client_timeout=2.0))
        except Exception:
            return False

    async def model_ready(self, name: str) -> bool:
        """Whether a model is loaded and ready (False: Triton answers that it is not, be it not
        deployed or still loading; a stage asks model_deployed, which tells those apart).
        TritonError when Triton cannot be reached: a stage must then answer UNAVAILABLE, not
        behave as if it had no model."""
        try:
            with self._using() as client:
                return bool(await client.is_model_ready(name, client_timeout=2.0))
        except Exception as exc:
            log.warning("Triton does not answer: %s", exc)
            raise TritonError("the model server (Triton) is unavailable") from exc

    async def model_deployed(self, name: str) -> bool:
        """Whether a stage should use a model: True when it is ready; False when Triton answers
        that it is not and this process never saw it ready (not deployed: the stage's model-free
        path). A model seen ready before and not ready now raises TritonError, as Triton down
        does: Triton (or the model) is restarting and loads it again within seconds, so the stage
        must answer UNAVAILABLE (the job retries) rather than carry on as if it had no model."""
        if await self.model_ready(name):
            self._seen_ready.add(name)
            return True
        if name in self._seen_ready:
            raise TritonError(f"the {name} model is loading; retry")
        return False

    async def healthy(self, models: tuple[str, ...] = ()) -> bool:
        """Whether Triton answers and none of the given models that were once ready has gone away
        (a model that was never deployed is not required: the stage works without it)."""
        self._renew_client()
        if not await self.server_live():
            return False
        try:
            for name in models:
                await self.model_deployed(name)
        except TritonError:
            return False
        return True

    async def output_names(self, name: str) -> list[str]:
        """The output tensors a loaded model declares."""
        try:
            with self._using() as client:
                metadata = await client.get_model_metadata(name, client_timeout=2.0)
        except InferenceServerException as exc:
            log.warning("Triton model %s: no metadata: %s", name, exc.message())
            raise TritonError(f"the {name} model is unavailable") from exc
        return [output.name for output in metadata.outputs]

    async def infer(
        self, contract: ModelContract, inputs: dict[str, np.ndarray], timeout_s: float | None = None
    ) -> dict[str, np.ndarray]:
        """Runs one inference and returns every output of the contract."""
        infer_inputs = []
        for spec in contract.inputs:
            array = inputs[spec.name]
            tensor = InferInput(spec.name, list(array.shape), spec.datatype)
            tensor.set_data_from_numpy(array)
            infer_inputs.append(tensor)
        requested = [InferRequestedOutput(spec.name) for spec in contract.outputs]
        # A client span of its own (tritonclient's channel has no interceptor), its context sent
        # along for a tritonserver that traces too.
        started = time.monotonic()
        with telemetry.tracer().start_as_current_span(
            f"triton {contract.name}", kind=SpanKind.CLIENT, attributes={telemetry.MODEL: contract.name}
        ) as span:
            try:
                with self._using() as client:
                    result = await client.infer(
                        contract.name,
                        infer_inputs,
                        outputs=requested,
                        client_timeout=timeout_s,
                        headers=telemetry.trace_headers() or None,
                    )
            except InferenceServerException as exc:
                log.warning("Triton model %s failed: %s", contract.name, exc.message())
                span.set_status(Status(StatusCode.ERROR, "the model is unavailable"))
                INFERENCE_DURATION.record(time.monotonic() - started, {"model": contract.name, "outcome": "error"})
                status = str(exc.status() or "").upper()
                timed_out = "DEADLINE_EXCEEDED" in status or "deadline" in (exc.message() or "").lower()
                if status.endswith("INTERNAL") and not timed_out and not _TRANSIENT.search(exc.message() or ""):
                    # Triton answered, and the model raised on this input (an ONNX Runtime error, a
                    # Python model's exception): as deterministic as a NaN answer. As UNAVAILABLE the
                    # job asked again until its deadline, then failed as the stage being away.
                    raise ModelOutputError(f"the {contract.name} model failed on this input") from exc
                raise TritonError(f"the {contract.name} model is unavailable", timed_out=timed_out) from exc
        INFERENCE_DURATION.record(time.monotonic() - started, {"model": contract.name, "outcome": "ok"})
        out: dict[str, np.ndarray] = {}
        for spec in contract.outputs:
            array = result.as_numpy(spec.name)
            if array is None:
                raise TritonError(f"the {contract.name} model returned no {spec.name}")
            problem = output_problem(spec, array)
            if problem is not None:
                log.warning("Triton model %s: its %s %s", contract.name, spec.name, problem)
                raise ModelOutputError(f"the {contract.name} model's {spec.name} {problem}")
            out[spec.name] = array
        return out
