from render.imaging.v1 import imaging_pb2 as _imaging_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EstimatePlaneRequest(_message.Message):
    __slots__ = ("width", "height", "quad", "photo", "mask_png", "focal_length_px", "plane_distance_meters", "exif_focal_length_px", "exif_focal_length_exact", "surface")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUAD_FIELD_NUMBER: _ClassVar[int]
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    PLANE_DISTANCE_METERS_FIELD_NUMBER: _ClassVar[int]
    EXIF_FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    EXIF_FOCAL_LENGTH_EXACT_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    quad: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.Point]
    photo: bytes
    mask_png: bytes
    focal_length_px: float
    plane_distance_meters: float
    exif_focal_length_px: float
    exif_focal_length_exact: bool
    surface: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., quad: _Optional[_Iterable[_Union[_imaging_pb2.Point, _Mapping]]] = ..., photo: _Optional[bytes] = ..., mask_png: _Optional[bytes] = ..., focal_length_px: _Optional[float] = ..., plane_distance_meters: _Optional[float] = ..., exif_focal_length_px: _Optional[float] = ..., exif_focal_length_exact: _Optional[bool] = ..., surface: _Optional[str] = ...) -> None: ...

class EstimatePlaneResponse(_message.Message):
    __slots__ = ("homography", "confidence", "source", "aspect_ratio", "focal_length_px", "used_depth_model", "meters_per_unit", "focal_source", "distance_source", "model_fallback_reason")
    HOMOGRAPHY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    USED_DEPTH_MODEL_FIELD_NUMBER: _ClassVar[int]
    METERS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    FOCAL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    homography: _imaging_pb2.Homography
    confidence: float
    source: str
    aspect_ratio: float
    focal_length_px: float
    used_depth_model: bool
    meters_per_unit: float
    focal_source: str
    distance_source: str
    model_fallback_reason: str
    def __init__(self, homography: _Optional[_Union[_imaging_pb2.Homography, _Mapping]] = ..., confidence: _Optional[float] = ..., source: _Optional[str] = ..., aspect_ratio: _Optional[float] = ..., focal_length_px: _Optional[float] = ..., used_depth_model: _Optional[bool] = ..., meters_per_unit: _Optional[float] = ..., focal_source: _Optional[str] = ..., distance_source: _Optional[str] = ..., model_fallback_reason: _Optional[str] = ...) -> None: ...
