from render.imaging.v1 import imaging_pb2 as _imaging_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderStatus(_message.Message):
    __slots__ = ("name", "model", "breaker_state", "consecutive_failures", "calls_total", "failures_total", "breaker_opened_total", "can_edit", "available", "unavailable_reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    CALLS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BREAKER_OPENED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CAN_EDIT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    breaker_state: str
    consecutive_failures: int
    calls_total: int
    failures_total: int
    breaker_opened_total: int
    can_edit: bool
    available: bool
    unavailable_reason: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., breaker_state: _Optional[str] = ..., consecutive_failures: _Optional[int] = ..., calls_total: _Optional[int] = ..., failures_total: _Optional[int] = ..., breaker_opened_total: _Optional[int] = ..., can_edit: _Optional[bool] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ...) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("refine_available", "provider", "model", "unavailable_reason", "providers")
    REFINE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    refine_available: bool
    provider: str
    model: str
    unavailable_reason: str
    providers: _containers.RepeatedCompositeFieldContainer[ProviderStatus]
    def __init__(self, refine_available: _Optional[bool] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., unavailable_reason: _Optional[str] = ..., providers: _Optional[_Iterable[_Union[ProviderStatus, _Mapping]]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_tokens", "max_cents")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_CENTS_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    max_cents: float
    def __init__(self, max_tokens: _Optional[int] = ..., max_cents: _Optional[float] = ...) -> None: ...

class Cost(_message.Message):
    __slots__ = ("tokens", "cents")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    CENTS_FIELD_NUMBER: _ClassVar[int]
    tokens: int
    cents: float
    def __init__(self, tokens: _Optional[int] = ..., cents: _Optional[float] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("provider", "outcome", "detail")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    outcome: str
    detail: str
    def __init__(self, provider: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ProviderCall(_message.Message):
    __slots__ = ("provider", "model", "prompt", "revised_prompt", "cost", "estimated_cost", "attempts", "dry_run")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REVISED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    prompt: str
    revised_prompt: str
    cost: Cost
    estimated_cost: Cost
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    dry_run: bool
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., prompt: _Optional[str] = ..., revised_prompt: _Optional[str] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., estimated_cost: _Optional[_Union[Cost, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "width", "height", "quality", "seed", "reference_images", "output", "budget", "dry_run")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    width: int
    height: int
    quality: str
    seed: int
    reference_images: _containers.RepeatedScalarFieldContainer[bytes]
    output: _imaging_pb2.OutputSpec
    budget: Budget
    dry_run: bool
    def __init__(self, prompt: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., quality: _Optional[str] = ..., seed: _Optional[int] = ..., reference_images: _Optional[_Iterable[bytes]] = ..., output: _Optional[_Union[_imaging_pb2.OutputSpec, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class EditRequest(_message.Message):
    __slots__ = ("image", "mask_png", "prompt", "seed", "output", "budget", "dry_run", "quality", "material_maps")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_MAPS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    mask_png: bytes
    prompt: str
    seed: int
    output: _imaging_pb2.OutputSpec
    budget: Budget
    dry_run: bool
    quality: str
    material_maps: bool
    def __init__(self, image: _Optional[bytes] = ..., mask_png: _Optional[bytes] = ..., prompt: _Optional[str] = ..., seed: _Optional[int] = ..., output: _Optional[_Union[_imaging_pb2.OutputSpec, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., dry_run: _Optional[bool] = ..., quality: _Optional[str] = ..., material_maps: _Optional[bool] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "call")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.EncodedImage]
    call: ProviderCall
    def __init__(self, images: _Optional[_Iterable[_Union[_imaging_pb2.EncodedImage, _Mapping]]] = ..., call: _Optional[_Union[ProviderCall, _Mapping]] = ...) -> None: ...

class EditResponse(_message.Message):
    __slots__ = ("images", "call")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.EncodedImage]
    call: ProviderCall
    def __init__(self, images: _Optional[_Iterable[_Union[_imaging_pb2.EncodedImage, _Mapping]]] = ..., call: _Optional[_Union[ProviderCall, _Mapping]] = ...) -> None: ...

class RefineRequest(_message.Message):
    __slots__ = ("image", "mask_png", "prompt", "seed", "output", "budget")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    mask_png: bytes
    prompt: str
    seed: int
    output: _imaging_pb2.OutputSpec
    budget: Budget
    def __init__(self, image: _Optional[bytes] = ..., mask_png: _Optional[bytes] = ..., prompt: _Optional[str] = ..., seed: _Optional[int] = ..., output: _Optional[_Union[_imaging_pb2.OutputSpec, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class Drift(_message.Message):
    __slots__ = ("color", "texture_similarity")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    color: float
    texture_similarity: float
    def __init__(self, color: _Optional[float] = ..., texture_similarity: _Optional[float] = ...) -> None: ...

class RefineResponse(_message.Message):
    __slots__ = ("images", "provider", "model", "call", "drift", "applied", "fallback_reason")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.EncodedImage]
    provider: str
    model: str
    call: ProviderCall
    drift: Drift
    applied: bool
    fallback_reason: str
    def __init__(self, images: _Optional[_Iterable[_Union[_imaging_pb2.EncodedImage, _Mapping]]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., call: _Optional[_Union[ProviderCall, _Mapping]] = ..., drift: _Optional[_Union[Drift, _Mapping]] = ..., applied: _Optional[bool] = ..., fallback_reason: _Optional[str] = ...) -> None: ...
