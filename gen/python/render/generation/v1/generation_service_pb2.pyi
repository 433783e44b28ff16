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

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("refine_available", "provider", "model", "unavailable_reason")
    REFINE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    refine_available: bool
    provider: str
    model: str
    unavailable_reason: str
    def __init__(self, refine_available: _Optional[bool] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., unavailable_reason: _Optional[str] = ...) -> None: ...

class RefineRequest(_message.Message):
    __slots__ = ("image", "mask_png", "prompt", "seed", "output")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    mask_png: bytes
    prompt: str
    seed: int
    output: _imaging_pb2.OutputSpec
    def __init__(self, image: _Optional[bytes] = ..., mask_png: _Optional[bytes] = ..., prompt: _Optional[str] = ..., seed: _Optional[int] = ..., output: _Optional[_Union[_imaging_pb2.OutputSpec, _Mapping]] = ...) -> None: ...

class RefineResponse(_message.Message):
    __slots__ = ("images", "provider", "model")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.EncodedImage]
    provider: str
    model: str
    def __init__(self, images: _Optional[_Iterable[_Union[_imaging_pb2.EncodedImage, _Mapping]]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...
