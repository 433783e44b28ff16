from render.imaging.v1 import imaging_pb2 as _imaging_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProjectRequest(_message.Message):
    __slots__ = ("photo", "swatch", "mask_png", "homography", "repeats_u", "repeats_v", "rotation_degrees", "output", "row_offset", "material_maps", "herringbone", "grout_color", "outline", "tile_aspect")
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    SWATCH_FIELD_NUMBER: _ClassVar[int]
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    HOMOGRAPHY_FIELD_NUMBER: _ClassVar[int]
    REPEATS_U_FIELD_NUMBER: _ClassVar[int]
    REPEATS_V_FIELD_NUMBER: _ClassVar[int]
    ROTATION_DEGREES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ROW_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_MAPS_FIELD_NUMBER: _ClassVar[int]
    HERRINGBONE_FIELD_NUMBER: _ClassVar[int]
    GROUT_COLOR_FIELD_NUMBER: _ClassVar[int]
    OUTLINE_FIELD_NUMBER: _ClassVar[int]
    TILE_ASPECT_FIELD_NUMBER: _ClassVar[int]
    photo: bytes
    swatch: bytes
    mask_png: bytes
    homography: _imaging_pb2.Homography
    repeats_u: float
    repeats_v: float
    rotation_degrees: float
    output: _imaging_pb2.OutputSpec
    row_offset: float
    material_maps: bool
    herringbone: bool
    grout_color: str
    outline: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.Point]
    tile_aspect: float
    def __init__(self, photo: _Optional[bytes] = ..., swatch: _Optional[bytes] = ..., mask_png: _Optional[bytes] = ..., homography: _Optional[_Union[_imaging_pb2.Homography, _Mapping]] = ..., repeats_u: _Optional[float] = ..., repeats_v: _Optional[float] = ..., rotation_degrees: _Optional[float] = ..., output: _Optional[_Union[_imaging_pb2.OutputSpec, _Mapping]] = ..., row_offset: _Optional[float] = ..., material_maps: _Optional[bool] = ..., herringbone: _Optional[bool] = ..., grout_color: _Optional[str] = ..., outline: _Optional[_Iterable[_Union[_imaging_pb2.Point, _Mapping]]] = ..., tile_aspect: _Optional[float] = ...) -> None: ...

class ProjectResponse(_message.Message):
    __slots__ = ("images", "swatch_transparent_fraction", "shading_source", "model_fallback_reason", "patch_colour")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SWATCH_TRANSPARENT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SHADING_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    PATCH_COLOUR_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_imaging_pb2.EncodedImage]
    swatch_transparent_fraction: float
    shading_source: str
    model_fallback_reason: str
    patch_colour: bool
    def __init__(self, images: _Optional[_Iterable[_Union[_imaging_pb2.EncodedImage, _Mapping]]] = ..., swatch_transparent_fraction: _Optional[float] = ..., shading_source: _Optional[str] = ..., model_fallback_reason: _Optional[str] = ..., patch_colour: _Optional[bool] = ...) -> None: ...
