from render.imaging.v1 import imaging_pb2 as _imaging_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentRequest(_message.Message):
    __slots__ = ("width", "height", "photo", "mask", "quad", "polygon", "positive_points", "negative_points", "box", "surface", "exif_focal_length_px")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    QUAD_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    EXIF_FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    photo: bytes
    mask: bytes
    quad: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.Point]
    polygon: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.Point]
    positive_points: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.Point]
    negative_points: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.Point]
    box: _imaging_pb2.Box
    surface: str
    exif_focal_length_px: float
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., photo: _Optional[bytes] = ..., mask: _Optional[bytes] = ..., quad: _Optional[_Iterable[_Union[_imaging_pb2.Point, _Mapping]]] = ..., polygon: _Optional[_Iterable[_Union[_imaging_pb2.Point, _Mapping]]] = ..., positive_points: _Optional[_Iterable[_Union[_imaging_pb2.Point, _Mapping]]] = ..., negative_points: _Optional[_Iterable[_Union[_imaging_pb2.Point, _Mapping]]] = ..., box: _Optional[_Union[_imaging_pb2.Box, _Mapping]] = ..., surface: _Optional[str] = ..., exif_focal_length_px: _Optional[float] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("mask_png", "source", "coverage", "used_model", "excluded_fraction", "model_fallback_reason")
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    USED_MODEL_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    mask_png: bytes
    source: str
    coverage: float
    used_model: bool
    excluded_fraction: float
    model_fallback_reason: str
    def __init__(self, mask_png: _Optional[bytes] = ..., source: _Optional[str] = ..., coverage: _Optional[float] = ..., used_model: _Optional[bool] = ..., excluded_fraction: _Optional[float] = ..., model_fallback_reason: _Optional[str] = ...) -> None: ...
