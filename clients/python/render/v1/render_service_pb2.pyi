import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Surface(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SURFACE_UNSPECIFIED: _ClassVar[Surface]
    SURFACE_FLOOR: _ClassVar[Surface]
    SURFACE_WALL: _ClassVar[Surface]
    SURFACE_CEILING: _ClassVar[Surface]
    SURFACE_FACADE: _ClassVar[Surface]

class TileLayout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TILE_LAYOUT_UNSPECIFIED: _ClassVar[TileLayout]
    TILE_LAYOUT_STRAIGHT: _ClassVar[TileLayout]
    TILE_LAYOUT_BRICK: _ClassVar[TileLayout]
    TILE_LAYOUT_HERRINGBONE: _ClassVar[TileLayout]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]

class Lighting(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIGHTING_UNSPECIFIED: _ClassVar[Lighting]
    LIGHTING_NATURAL: _ClassVar[Lighting]
    LIGHTING_WARM: _ClassVar[Lighting]
    LIGHTING_COOL: _ClassVar[Lighting]
    LIGHTING_DRAMATIC: _ClassVar[Lighting]

class TimeOfDay(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_OF_DAY_UNSPECIFIED: _ClassVar[TimeOfDay]
    TIME_OF_DAY_DAY: _ClassVar[TimeOfDay]
    TIME_OF_DAY_EVENING: _ClassVar[TimeOfDay]
    TIME_OF_DAY_NIGHT: _ClassVar[TimeOfDay]

class RenderQuality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RENDER_QUALITY_UNSPECIFIED: _ClassVar[RenderQuality]
    RENDER_QUALITY_STANDARD: _ClassVar[RenderQuality]
    RENDER_QUALITY_HD: _ClassVar[RenderQuality]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_SEGMENTATION: _ClassVar[Stage]
    STAGE_DEPTH: _ClassVar[Stage]
    STAGE_PROJECTION: _ClassVar[Stage]
    STAGE_GENERATION: _ClassVar[Stage]
    STAGE_OUTPUT: _ClassVar[Stage]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_VALIDATION_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_DOWNLOAD_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_PIPELINE_ERROR: _ClassVar[ErrorCode]
    ERROR_CODE_UPLOAD_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_CONTENT_POLICY: _ClassVar[ErrorCode]
    ERROR_CODE_PROVIDER_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_BUDGET_EXCEEDED: _ClassVar[ErrorCode]
    ERROR_CODE_TIMEOUT: _ClassVar[ErrorCode]
    ERROR_CODE_QUALITY_CHECK_FAILED: _ClassVar[ErrorCode]

class CreditEntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDIT_ENTRY_KIND_UNSPECIFIED: _ClassVar[CreditEntryKind]
    CREDIT_ENTRY_KIND_GRANT: _ClassVar[CreditEntryKind]
    CREDIT_ENTRY_KIND_RESERVE: _ClassVar[CreditEntryKind]
    CREDIT_ENTRY_KIND_REFUND: _ClassVar[CreditEntryKind]

class WebhookEvent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_EVENT_UNSPECIFIED: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_STARTED: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_PROGRESS: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_COMPLETED: _ClassVar[WebhookEvent]

class WebhookDeliveryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_DELIVERY_STATUS_UNSPECIFIED: _ClassVar[WebhookDeliveryStatus]
    WEBHOOK_DELIVERY_STATUS_PENDING: _ClassVar[WebhookDeliveryStatus]
    WEBHOOK_DELIVERY_STATUS_DELIVERED: _ClassVar[WebhookDeliveryStatus]
    WEBHOOK_DELIVERY_STATUS_FAILED: _ClassVar[WebhookDeliveryStatus]

class WebhookAttemptResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_ATTEMPT_RESULT_UNSPECIFIED: _ClassVar[WebhookAttemptResult]
    WEBHOOK_ATTEMPT_RESULT_SUCCESS: _ClassVar[WebhookAttemptResult]
    WEBHOOK_ATTEMPT_RESULT_HTTP_ERROR: _ClassVar[WebhookAttemptResult]
    WEBHOOK_ATTEMPT_RESULT_TIMEOUT: _ClassVar[WebhookAttemptResult]
    WEBHOOK_ATTEMPT_RESULT_CONNECTION_FAILED: _ClassVar[WebhookAttemptResult]
    WEBHOOK_ATTEMPT_RESULT_TLS_FAILED: _ClassVar[WebhookAttemptResult]
    WEBHOOK_ATTEMPT_RESULT_ADDRESS_REFUSED: _ClassVar[WebhookAttemptResult]
    WEBHOOK_ATTEMPT_RESULT_INVALID_RESPONSE: _ClassVar[WebhookAttemptResult]
SURFACE_UNSPECIFIED: Surface
SURFACE_FLOOR: Surface
SURFACE_WALL: Surface
SURFACE_CEILING: Surface
SURFACE_FACADE: Surface
TILE_LAYOUT_UNSPECIFIED: TileLayout
TILE_LAYOUT_STRAIGHT: TileLayout
TILE_LAYOUT_BRICK: TileLayout
TILE_LAYOUT_HERRINGBONE: TileLayout
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
LIGHTING_UNSPECIFIED: Lighting
LIGHTING_NATURAL: Lighting
LIGHTING_WARM: Lighting
LIGHTING_COOL: Lighting
LIGHTING_DRAMATIC: Lighting
TIME_OF_DAY_UNSPECIFIED: TimeOfDay
TIME_OF_DAY_DAY: TimeOfDay
TIME_OF_DAY_EVENING: TimeOfDay
TIME_OF_DAY_NIGHT: TimeOfDay
RENDER_QUALITY_UNSPECIFIED: RenderQuality
RENDER_QUALITY_STANDARD: RenderQuality
RENDER_QUALITY_HD: RenderQuality
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
STAGE_UNSPECIFIED: Stage
STAGE_SEGMENTATION: Stage
STAGE_DEPTH: Stage
STAGE_PROJECTION: Stage
STAGE_GENERATION: Stage
STAGE_OUTPUT: Stage
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_VALIDATION_FAILED: ErrorCode
ERROR_CODE_DOWNLOAD_FAILED: ErrorCode
ERROR_CODE_PIPELINE_ERROR: ErrorCode
ERROR_CODE_UPLOAD_FAILED: ErrorCode
ERROR_CODE_CONTENT_POLICY: ErrorCode
ERROR_CODE_PROVIDER_UNAVAILABLE: ErrorCode
ERROR_CODE_BUDGET_EXCEEDED: ErrorCode
ERROR_CODE_TIMEOUT: ErrorCode
ERROR_CODE_QUALITY_CHECK_FAILED: ErrorCode
CREDIT_ENTRY_KIND_UNSPECIFIED: CreditEntryKind
CREDIT_ENTRY_KIND_GRANT: CreditEntryKind
CREDIT_ENTRY_KIND_RESERVE: CreditEntryKind
CREDIT_ENTRY_KIND_REFUND: CreditEntryKind
WEBHOOK_EVENT_UNSPECIFIED: WebhookEvent
WEBHOOK_EVENT_STARTED: WebhookEvent
WEBHOOK_EVENT_PROGRESS: WebhookEvent
WEBHOOK_EVENT_COMPLETED: WebhookEvent
WEBHOOK_DELIVERY_STATUS_UNSPECIFIED: WebhookDeliveryStatus
WEBHOOK_DELIVERY_STATUS_PENDING: WebhookDeliveryStatus
WEBHOOK_DELIVERY_STATUS_DELIVERED: WebhookDeliveryStatus
WEBHOOK_DELIVERY_STATUS_FAILED: WebhookDeliveryStatus
WEBHOOK_ATTEMPT_RESULT_UNSPECIFIED: WebhookAttemptResult
WEBHOOK_ATTEMPT_RESULT_SUCCESS: WebhookAttemptResult
WEBHOOK_ATTEMPT_RESULT_HTTP_ERROR: WebhookAttemptResult
WEBHOOK_ATTEMPT_RESULT_TIMEOUT: WebhookAttemptResult
WEBHOOK_ATTEMPT_RESULT_CONNECTION_FAILED: WebhookAttemptResult
WEBHOOK_ATTEMPT_RESULT_TLS_FAILED: WebhookAttemptResult
WEBHOOK_ATTEMPT_RESULT_ADDRESS_REFUSED: WebhookAttemptResult
WEBHOOK_ATTEMPT_RESULT_INVALID_RESPONSE: WebhookAttemptResult

class ImageSource(_message.Message):
    __slots__ = ("data", "url", "asset_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    url: str
    asset_id: str
    def __init__(self, data: _Optional[bytes] = ..., url: _Optional[str] = ..., asset_id: _Optional[str] = ...) -> None: ...

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

class QuadSize(_message.Message):
    __slots__ = ("width_meters", "height_meters")
    WIDTH_METERS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_METERS_FIELD_NUMBER: _ClassVar[int]
    width_meters: float
    height_meters: float
    def __init__(self, width_meters: _Optional[float] = ..., height_meters: _Optional[float] = ...) -> None: ...

class SurfaceHints(_message.Message):
    __slots__ = ("quad", "polygon", "positive_points", "negative_points", "box", "quad_size", "focal_length_px", "plane_distance_meters")
    QUAD_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    QUAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    PLANE_DISTANCE_METERS_FIELD_NUMBER: _ClassVar[int]
    quad: _containers.RepeatedCompositeFieldContainer[Point]
    polygon: _containers.RepeatedCompositeFieldContainer[Point]
    positive_points: _containers.RepeatedCompositeFieldContainer[Point]
    negative_points: _containers.RepeatedCompositeFieldContainer[Point]
    box: Box
    quad_size: QuadSize
    focal_length_px: float
    plane_distance_meters: float
    def __init__(self, quad: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., polygon: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., positive_points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., negative_points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., quad_size: _Optional[_Union[QuadSize, _Mapping]] = ..., focal_length_px: _Optional[float] = ..., plane_distance_meters: _Optional[float] = ...) -> None: ...

class SwatchSize(_message.Message):
    __slots__ = ("width_meters", "height_meters")
    WIDTH_METERS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_METERS_FIELD_NUMBER: _ClassVar[int]
    width_meters: float
    height_meters: float
    def __init__(self, width_meters: _Optional[float] = ..., height_meters: _Optional[float] = ...) -> None: ...

class RealWorldScale(_message.Message):
    __slots__ = ("repeats", "swatch_size")
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    SWATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    repeats: float
    swatch_size: SwatchSize
    def __init__(self, repeats: _Optional[float] = ..., swatch_size: _Optional[_Union[SwatchSize, _Mapping]] = ...) -> None: ...

class MaterialSwapOptions(_message.Message):
    __slots__ = ("real_world_scale", "enable_refinement", "refinement_seed", "stage_timeout_seconds", "rotation_degrees", "layout", "row_offset", "grout_color")
    REAL_WORLD_SCALE_FIELD_NUMBER: _ClassVar[int]
    ENABLE_REFINEMENT_FIELD_NUMBER: _ClassVar[int]
    REFINEMENT_SEED_FIELD_NUMBER: _ClassVar[int]
    STAGE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROTATION_DEGREES_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    ROW_OFFSET_FIELD_NUMBER: _ClassVar[int]
    GROUT_COLOR_FIELD_NUMBER: _ClassVar[int]
    real_world_scale: RealWorldScale
    enable_refinement: bool
    refinement_seed: int
    stage_timeout_seconds: float
    rotation_degrees: float
    layout: TileLayout
    row_offset: float
    grout_color: str
    def __init__(self, real_world_scale: _Optional[_Union[RealWorldScale, _Mapping]] = ..., enable_refinement: _Optional[bool] = ..., refinement_seed: _Optional[int] = ..., stage_timeout_seconds: _Optional[float] = ..., rotation_degrees: _Optional[float] = ..., layout: _Optional[_Union[TileLayout, str]] = ..., row_offset: _Optional[float] = ..., grout_color: _Optional[str] = ...) -> None: ...

class MaterialSwap(_message.Message):
    __slots__ = ("photo", "swatch", "mask", "surface", "hints", "options", "variant_swatches")
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    SWATCH_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_SWATCHES_FIELD_NUMBER: _ClassVar[int]
    photo: ImageSource
    swatch: ImageSource
    mask: ImageSource
    surface: Surface
    hints: SurfaceHints
    options: MaterialSwapOptions
    variant_swatches: _containers.RepeatedCompositeFieldContainer[ImageSource]
    def __init__(self, photo: _Optional[_Union[ImageSource, _Mapping]] = ..., swatch: _Optional[_Union[ImageSource, _Mapping]] = ..., mask: _Optional[_Union[ImageSource, _Mapping]] = ..., surface: _Optional[_Union[Surface, str]] = ..., hints: _Optional[_Union[SurfaceHints, _Mapping]] = ..., options: _Optional[_Union[MaterialSwapOptions, _Mapping]] = ..., variant_swatches: _Optional[_Iterable[_Union[ImageSource, _Mapping]]] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("format", "quality", "skip_preview", "include_2048", "include_material_maps")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SKIP_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_2048_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MATERIAL_MAPS_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    quality: int
    skip_preview: bool
    include_2048: bool
    include_material_maps: bool
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., quality: _Optional[int] = ..., skip_preview: _Optional[bool] = ..., include_2048: _Optional[bool] = ..., include_material_maps: _Optional[bool] = ...) -> None: ...

class SubmitRenderRequest(_message.Message):
    __slots__ = ("idempotency_key", "project_id", "user_id", "output", "webhook", "material_swap", "room_render", "room_batch", "texture_edit")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_SWAP_FIELD_NUMBER: _ClassVar[int]
    ROOM_RENDER_FIELD_NUMBER: _ClassVar[int]
    ROOM_BATCH_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_EDIT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    project_id: str
    user_id: str
    output: OutputOptions
    webhook: Webhook
    material_swap: MaterialSwap
    room_render: RoomRender
    room_batch: RoomBatch
    texture_edit: TextureEdit
    def __init__(self, idempotency_key: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., webhook: _Optional[_Union[Webhook, _Mapping]] = ..., material_swap: _Optional[_Union[MaterialSwap, _Mapping]] = ..., room_render: _Optional[_Union[RoomRender, _Mapping]] = ..., room_batch: _Optional[_Union[RoomBatch, _Mapping]] = ..., texture_edit: _Optional[_Union[TextureEdit, _Mapping]] = ...) -> None: ...

class Room(_message.Message):
    __slots__ = ("id", "name", "room_type", "area_square_meters")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROOM_TYPE_FIELD_NUMBER: _ClassVar[int]
    AREA_SQUARE_METERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    room_type: str
    area_square_meters: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., room_type: _Optional[str] = ..., area_square_meters: _Optional[float] = ...) -> None: ...

class SurfaceMaterial(_message.Message):
    __slots__ = ("name", "description", "swatch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SWATCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    swatch: ImageSource
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., swatch: _Optional[_Union[ImageSource, _Mapping]] = ...) -> None: ...

class RoomMaterials(_message.Message):
    __slots__ = ("floor", "walls", "ceiling")
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    WALLS_FIELD_NUMBER: _ClassVar[int]
    CEILING_FIELD_NUMBER: _ClassVar[int]
    floor: SurfaceMaterial
    walls: SurfaceMaterial
    ceiling: SurfaceMaterial
    def __init__(self, floor: _Optional[_Union[SurfaceMaterial, _Mapping]] = ..., walls: _Optional[_Union[SurfaceMaterial, _Mapping]] = ..., ceiling: _Optional[_Union[SurfaceMaterial, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_tokens", "max_cents")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_CENTS_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    max_cents: float
    def __init__(self, max_tokens: _Optional[int] = ..., max_cents: _Optional[float] = ...) -> None: ...

class GenerationOptions(_message.Message):
    __slots__ = ("size", "quality", "style_preset", "lighting", "time_of_day", "additional_prompt", "dry_run", "budget", "seed")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    STYLE_PRESET_FIELD_NUMBER: _ClassVar[int]
    LIGHTING_FIELD_NUMBER: _ClassVar[int]
    TIME_OF_DAY_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    size: str
    quality: RenderQuality
    style_preset: str
    lighting: Lighting
    time_of_day: TimeOfDay
    additional_prompt: str
    dry_run: bool
    budget: Budget
    seed: int
    def __init__(self, size: _Optional[str] = ..., quality: _Optional[_Union[RenderQuality, str]] = ..., style_preset: _Optional[str] = ..., lighting: _Optional[_Union[Lighting, str]] = ..., time_of_day: _Optional[_Union[TimeOfDay, str]] = ..., additional_prompt: _Optional[str] = ..., dry_run: _Optional[bool] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., seed: _Optional[int] = ...) -> None: ...

class RoomRender(_message.Message):
    __slots__ = ("room", "materials", "options", "custom_prompt")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    MATERIALS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    room: Room
    materials: RoomMaterials
    options: GenerationOptions
    custom_prompt: str
    def __init__(self, room: _Optional[_Union[Room, _Mapping]] = ..., materials: _Optional[_Union[RoomMaterials, _Mapping]] = ..., options: _Optional[_Union[GenerationOptions, _Mapping]] = ..., custom_prompt: _Optional[str] = ...) -> None: ...

class RoomBatch(_message.Message):
    __slots__ = ("floor_plan_id", "rooms", "options", "max_concurrency")
    FLOOR_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    floor_plan_id: str
    rooms: _containers.RepeatedCompositeFieldContainer[RoomRender]
    options: GenerationOptions
    max_concurrency: int
    def __init__(self, floor_plan_id: _Optional[str] = ..., rooms: _Optional[_Iterable[_Union[RoomRender, _Mapping]]] = ..., options: _Optional[_Union[GenerationOptions, _Mapping]] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class TextureEdit(_message.Message):
    __slots__ = ("base_texture", "mask", "prompt", "options")
    BASE_TEXTURE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    base_texture: ImageSource
    mask: ImageSource
    prompt: str
    options: GenerationOptions
    def __init__(self, base_texture: _Optional[_Union[ImageSource, _Mapping]] = ..., mask: _Optional[_Union[ImageSource, _Mapping]] = ..., prompt: _Optional[str] = ..., options: _Optional[_Union[GenerationOptions, _Mapping]] = ...) -> None: ...

class SubmitRenderResponse(_message.Message):
    __slots__ = ("job", "deduplicated")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    deduplicated: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after", "outcome_only")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_ONLY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after: str
    outcome_only: bool
    def __init__(self, job_id: _Optional[str] = ..., after: _Optional[str] = ..., outcome_only: _Optional[bool] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("event", "keep_alive")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    event: JobEvent
    keep_alive: bool
    def __init__(self, event: _Optional[_Union[JobEvent, _Mapping]] = ..., keep_alive: _Optional[bool] = ...) -> None: ...

class SubmitAndWatchRequest(_message.Message):
    __slots__ = ("request", "outcome_only")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_ONLY_FIELD_NUMBER: _ClassVar[int]
    request: SubmitRenderRequest
    outcome_only: bool
    def __init__(self, request: _Optional[_Union[SubmitRenderRequest, _Mapping]] = ..., outcome_only: _Optional[bool] = ...) -> None: ...

class SubmitAndWatchResponse(_message.Message):
    __slots__ = ("event", "keep_alive")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    event: JobEvent
    keep_alive: bool
    def __init__(self, event: _Optional[_Union[JobEvent, _Mapping]] = ..., keep_alive: _Optional[bool] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "project_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    project_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., project_id: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class OutputFile(_message.Message):
    __slots__ = ("name", "uri", "size_bytes", "content_type", "sha256", "width", "height", "url", "url_expire_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    URL_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    size_bytes: int
    content_type: str
    sha256: str
    width: int
    height: int
    url: str
    url_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., size_bytes: _Optional[int] = ..., content_type: _Optional[str] = ..., sha256: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., url: _Optional[str] = ..., url_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("outputs", "geometry_source", "geometry_confidence", "scale_source", "repeats_u", "repeats_v", "geometry_reused", "generation", "batch", "refinement", "focal_length_px", "focal_source", "shading_source")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SCALE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REPEATS_U_FIELD_NUMBER: _ClassVar[int]
    REPEATS_V_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_REUSED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    REFINEMENT_FIELD_NUMBER: _ClassVar[int]
    FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    FOCAL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SHADING_SOURCE_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputFile]
    geometry_source: str
    geometry_confidence: float
    scale_source: str
    repeats_u: float
    repeats_v: float
    geometry_reused: bool
    generation: GenerationReport
    batch: BatchReport
    refinement: RefinementReport
    focal_length_px: float
    focal_source: str
    shading_source: str
    def __init__(self, outputs: _Optional[_Iterable[_Union[OutputFile, _Mapping]]] = ..., geometry_source: _Optional[str] = ..., geometry_confidence: _Optional[float] = ..., scale_source: _Optional[str] = ..., repeats_u: _Optional[float] = ..., repeats_v: _Optional[float] = ..., geometry_reused: _Optional[bool] = ..., generation: _Optional[_Union[GenerationReport, _Mapping]] = ..., batch: _Optional[_Union[BatchReport, _Mapping]] = ..., refinement: _Optional[_Union[RefinementReport, _Mapping]] = ..., focal_length_px: _Optional[float] = ..., focal_source: _Optional[str] = ..., shading_source: _Optional[str] = ...) -> None: ...

class Cost(_message.Message):
    __slots__ = ("tokens", "cents")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    CENTS_FIELD_NUMBER: _ClassVar[int]
    tokens: int
    cents: float
    def __init__(self, tokens: _Optional[int] = ..., cents: _Optional[float] = ...) -> None: ...

class ProviderAttempt(_message.Message):
    __slots__ = ("provider", "outcome", "detail")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    outcome: str
    detail: str
    def __init__(self, provider: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GenerationReport(_message.Message):
    __slots__ = ("prompt", "revised_prompt", "provider", "model", "cost", "estimated_cost", "dry_run", "attempts")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REVISED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    revised_prompt: str
    provider: str
    model: str
    cost: Cost
    estimated_cost: Cost
    dry_run: bool
    attempts: _containers.RepeatedCompositeFieldContainer[ProviderAttempt]
    def __init__(self, prompt: _Optional[str] = ..., revised_prompt: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., estimated_cost: _Optional[_Union[Cost, _Mapping]] = ..., dry_run: _Optional[bool] = ..., attempts: _Optional[_Iterable[_Union[ProviderAttempt, _Mapping]]] = ...) -> None: ...

class RefinementReport(_message.Message):
    __slots__ = ("applied", "color_drift", "texture_similarity", "fallback_reason")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    COLOR_DRIFT_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    color_drift: float
    texture_similarity: float
    fallback_reason: str
    def __init__(self, applied: _Optional[bool] = ..., color_drift: _Optional[float] = ..., texture_similarity: _Optional[float] = ..., fallback_reason: _Optional[str] = ...) -> None: ...

class ChildJob(_message.Message):
    __slots__ = ("index", "room_id", "room_name", "job_id", "state", "error", "outputs")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    room_id: str
    room_name: str
    job_id: str
    state: JobState
    error: JobError
    outputs: _containers.RepeatedCompositeFieldContainer[OutputFile]
    def __init__(self, index: _Optional[int] = ..., room_id: _Optional[str] = ..., room_name: _Optional[str] = ..., job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[OutputFile, _Mapping]]] = ...) -> None: ...

class BatchReport(_message.Message):
    __slots__ = ("total", "succeeded", "failed", "cancelled", "children", "cost")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    total: int
    succeeded: int
    failed: int
    cancelled: int
    children: _containers.RepeatedCompositeFieldContainer[ChildJob]
    cost: Cost
    def __init__(self, total: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., children: _Optional[_Iterable[_Union[ChildJob, _Mapping]]] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "stage", "step", "total_steps", "progress", "create_time", "update_time", "start_time", "end_time", "result", "error", "project_id", "user_id", "kind", "message", "attempt", "parent_job_id", "credits_reserved", "credits_charged")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PARENT_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREDITS_RESERVED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_CHARGED_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: JobState
    stage: Stage
    step: int
    total_steps: int
    progress: float
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    result: JobResult
    error: JobError
    project_id: str
    user_id: str
    kind: str
    message: str
    attempt: int
    parent_job_id: str
    credits_reserved: int
    credits_charged: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[_Union[Stage, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., progress: _Optional[float] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., attempt: _Optional[int] = ..., parent_job_id: _Optional[str] = ..., credits_reserved: _Optional[int] = ..., credits_charged: _Optional[int] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("balance", "reserved")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    balance: int
    reserved: int
    def __init__(self, balance: _Optional[int] = ..., reserved: _Optional[int] = ...) -> None: ...

class CreditEntry(_message.Message):
    __slots__ = ("id", "kind", "amount", "balance", "job_id", "note", "time")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: CreditEntryKind
    amount: int
    balance: int
    job_id: str
    note: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[CreditEntryKind, str]] = ..., amount: _Optional[int] = ..., balance: _Optional[int] = ..., job_id: _Optional[str] = ..., note: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListCreditEntriesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCreditEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CreditEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[CreditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("cursor", "job_id", "time", "state", "stage", "step", "total_steps", "stage_progress", "progress", "message", "result", "error", "children")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    STAGE_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    job_id: str
    time: _timestamp_pb2.Timestamp
    state: JobState
    stage: Stage
    step: int
    total_steps: int
    stage_progress: float
    progress: float
    message: str
    result: JobResult
    error: JobError
    children: _containers.RepeatedCompositeFieldContainer[ChildJob]
    def __init__(self, cursor: _Optional[str] = ..., job_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[_Union[Stage, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., stage_progress: _Optional[float] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., children: _Optional[_Iterable[_Union[ChildJob, _Mapping]]] = ...) -> None: ...

class UploadAssetRequest(_message.Message):
    __slots__ = ("data", "name")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    name: str
    def __init__(self, data: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class Asset(_message.Message):
    __slots__ = ("id", "name", "content_type", "width", "height", "size_bytes", "sha256", "create_time", "expire_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UploadAssetResponse(_message.Message):
    __slots__ = ("asset",)
    ASSET_FIELD_NUMBER: _ClassVar[int]
    asset: Asset
    def __init__(self, asset: _Optional[_Union[Asset, _Mapping]] = ...) -> None: ...

class GetOutputRequest(_message.Message):
    __slots__ = ("job_id", "name", "offset", "limit")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    offset: int
    limit: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class GetOutputResponse(_message.Message):
    __slots__ = ("file", "data")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file: OutputFile
    data: bytes
    def __init__(self, file: _Optional[_Union[OutputFile, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("url", "events")
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    url: str
    events: _containers.RepeatedScalarFieldContainer[WebhookEvent]
    def __init__(self, url: _Optional[str] = ..., events: _Optional[_Iterable[_Union[WebhookEvent, str]]] = ...) -> None: ...

class WebhookEndpoint(_message.Message):
    __slots__ = ("id", "url", "events", "description", "create_time", "disabled")
    ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    url: str
    events: _containers.RepeatedScalarFieldContainer[WebhookEvent]
    description: str
    create_time: _timestamp_pb2.Timestamp
    disabled: bool
    def __init__(self, id: _Optional[str] = ..., url: _Optional[str] = ..., events: _Optional[_Iterable[_Union[WebhookEvent, str]]] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disabled: _Optional[bool] = ...) -> None: ...

class CreateWebhookEndpointRequest(_message.Message):
    __slots__ = ("url", "events", "description", "idempotency_key")
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    url: str
    events: _containers.RepeatedScalarFieldContainer[WebhookEvent]
    description: str
    idempotency_key: str
    def __init__(self, url: _Optional[str] = ..., events: _Optional[_Iterable[_Union[WebhookEvent, str]]] = ..., description: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateWebhookEndpointResponse(_message.Message):
    __slots__ = ("endpoint", "secret", "deduplicated")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    endpoint: WebhookEndpoint
    secret: str
    deduplicated: bool
    def __init__(self, endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ..., secret: _Optional[str] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class ListWebhookEndpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWebhookEndpointsResponse(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[WebhookEndpoint]
    def __init__(self, endpoints: _Optional[_Iterable[_Union[WebhookEndpoint, _Mapping]]] = ...) -> None: ...

class DeleteWebhookEndpointRequest(_message.Message):
    __slots__ = ("endpoint_id",)
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    def __init__(self, endpoint_id: _Optional[str] = ...) -> None: ...

class DeleteWebhookEndpointResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateWebhookSecretRequest(_message.Message):
    __slots__ = ("endpoint_id",)
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    def __init__(self, endpoint_id: _Optional[str] = ...) -> None: ...

class RotateWebhookSecretResponse(_message.Message):
    __slots__ = ("secret", "previous_secret_expire_time")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRET_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    secret: str
    previous_secret_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, secret: _Optional[str] = ..., previous_secret_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("job_id", "page_size", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WebhookDeliveryAttempt(_message.Message):
    __slots__ = ("time", "result", "http_status", "duration_ms", "error_message")
    TIME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    result: WebhookAttemptResult
    http_status: int
    duration_ms: int
    error_message: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[_Union[WebhookAttemptResult, str]] = ..., http_status: _Optional[int] = ..., duration_ms: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("id", "job_id", "endpoint_id", "url", "event_type", "status", "attempts", "create_time", "next_attempt_time", "failure_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    endpoint_id: str
    url: str
    event_type: str
    status: WebhookDeliveryStatus
    attempts: _containers.RepeatedCompositeFieldContainer[WebhookDeliveryAttempt]
    create_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    failure_reason: str
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., url: _Optional[str] = ..., event_type: _Optional[str] = ..., status: _Optional[_Union[WebhookDeliveryStatus, str]] = ..., attempts: _Optional[_Iterable[_Union[WebhookDeliveryAttempt, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failure_reason: _Optional[str] = ...) -> None: ...
