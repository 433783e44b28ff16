from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Format(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FORMAT_UNSPECIFIED: _ClassVar[Format]
    FORMAT_JPEG: _ClassVar[Format]
    FORMAT_PNG: _ClassVar[Format]
    FORMAT_WEBP: _ClassVar[Format]
FORMAT_UNSPECIFIED: Format
FORMAT_JPEG: Format
FORMAT_PNG: Format
FORMAT_WEBP: Format

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ...) -> None: ...

class Homography(_message.Message):
    __slots__ = ("m",)
    M_FIELD_NUMBER: _ClassVar[int]
    m: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, m: _Optional[_Iterable[float]] = ...) -> None: ...

class Rendition(_message.Message):
    __slots__ = ("name", "max_side", "upscale")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    UPSCALE_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_side: int
    upscale: bool
    def __init__(self, name: _Optional[str] = ..., max_side: _Optional[int] = ..., upscale: _Optional[bool] = ...) -> None: ...

class OutputSpec(_message.Message):
    __slots__ = ("format", "quality", "renditions")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    RENDITIONS_FIELD_NUMBER: _ClassVar[int]
    format: Format
    quality: int
    renditions: _containers.RepeatedCompositeFieldContainer[Rendition]
    def __init__(self, format: _Optional[_Union[Format, str]] = ..., quality: _Optional[int] = ..., renditions: _Optional[_Iterable[_Union[Rendition, _Mapping]]] = ...) -> None: ...

class EncodedImage(_message.Message):
    __slots__ = ("name", "data", "content_type", "width", "height")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    content_type: str
    width: int
    height: int
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...
