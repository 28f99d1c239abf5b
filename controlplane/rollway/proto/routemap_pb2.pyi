from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OpenRequestsRequest(_message.Message):
    __slots__ = ("service", "endpoints")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    service: str
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, service: _Optional[str] = ..., endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class EndpointRequests(_message.Message):
    __slots__ = ("endpoint", "requests")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    requests: int
    def __init__(self, endpoint: _Optional[str] = ..., requests: _Optional[int] = ...) -> None: ...

class OpenRequestsResponse(_message.Message):
    __slots__ = ("endpoints", "unreported", "report_interval_seconds")
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    UNREPORTED_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointRequests]
    unreported: _containers.RepeatedScalarFieldContainer[str]
    report_interval_seconds: float
    def __init__(self, endpoints: _Optional[_Iterable[_Union[EndpointRequests, _Mapping]]] = ..., unreported: _Optional[_Iterable[str]] = ..., report_interval_seconds: _Optional[float] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceSummary(_message.Message):
    __slots__ = ("service", "revision", "generation", "domains", "path_prefix", "envoys", "stale_envoys", "halted")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ENVOYS_FIELD_NUMBER: _ClassVar[int]
    STALE_ENVOYS_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    service: str
    revision: int
    generation: int
    domains: _containers.RepeatedScalarFieldContainer[str]
    path_prefix: str
    envoys: int
    stale_envoys: int
    halted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, service: _Optional[str] = ..., revision: _Optional[int] = ..., generation: _Optional[int] = ..., domains: _Optional[_Iterable[str]] = ..., path_prefix: _Optional[str] = ..., envoys: _Optional[int] = ..., stale_envoys: _Optional[int] = ..., halted: _Optional[_Iterable[str]] = ...) -> None: ...

class EnvoyFronting(_message.Message):
    __slots__ = ("node_id", "services")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services", "envoys")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    ENVOYS_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceSummary]
    envoys: _containers.RepeatedCompositeFieldContainer[EnvoyFronting]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceSummary, _Mapping]]] = ..., envoys: _Optional[_Iterable[_Union[EnvoyFronting, _Mapping]]] = ...) -> None: ...

class RouteMapRevision(_message.Message):
    __slots__ = ("service", "revision", "document", "author", "reason", "time")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    service: str
    revision: int
    document: str
    author: str
    reason: str
    time: float
    def __init__(self, service: _Optional[str] = ..., revision: _Optional[int] = ..., document: _Optional[str] = ..., author: _Optional[str] = ..., reason: _Optional[str] = ..., time: _Optional[float] = ...) -> None: ...

class ValidateRequest(_message.Message):
    __slots__ = ("document", "sample_size")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    document: str
    sample_size: int
    def __init__(self, document: _Optional[str] = ..., sample_size: _Optional[int] = ...) -> None: ...

class StageChange(_message.Message):
    __slots__ = ("stage", "current_share", "proposed_share", "stage_change_share", "version_change_share")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_SHARE_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_SHARE_FIELD_NUMBER: _ClassVar[int]
    STAGE_CHANGE_SHARE_FIELD_NUMBER: _ClassVar[int]
    VERSION_CHANGE_SHARE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    current_share: float
    proposed_share: float
    stage_change_share: float
    version_change_share: float
    def __init__(self, stage: _Optional[str] = ..., current_share: _Optional[float] = ..., proposed_share: _Optional[float] = ..., stage_change_share: _Optional[float] = ..., version_change_share: _Optional[float] = ...) -> None: ...

class ValidateResponse(_message.Message):
    __slots__ = ("service", "sample_size", "stages", "total_change_share")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CHANGE_SHARE_FIELD_NUMBER: _ClassVar[int]
    service: str
    sample_size: int
    stages: _containers.RepeatedCompositeFieldContainer[StageChange]
    total_change_share: float
    def __init__(self, service: _Optional[str] = ..., sample_size: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[StageChange, _Mapping]]] = ..., total_change_share: _Optional[float] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("document", "expected_revision", "author", "reason")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    document: str
    expected_revision: int
    author: str
    reason: str
    def __init__(self, document: _Optional[str] = ..., expected_revision: _Optional[int] = ..., author: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: RouteMapRevision
    def __init__(self, revision: _Optional[_Union[RouteMapRevision, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("service", "revision")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    service: str
    revision: int
    def __init__(self, service: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: str
    def __init__(self, service: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("revisions",)
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[RouteMapRevision]
    def __init__(self, revisions: _Optional[_Iterable[_Union[RouteMapRevision, _Mapping]]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("service", "to_revision", "expected_revision", "author", "reason")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    service: str
    to_revision: int
    expected_revision: int
    author: str
    reason: str
    def __init__(self, service: _Optional[str] = ..., to_revision: _Optional[int] = ..., expected_revision: _Optional[int] = ..., author: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WatchStatusRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: str
    def __init__(self, service: _Optional[str] = ...) -> None: ...

class VersionStatus(_message.Message):
    __slots__ = ("name", "capacity", "members", "halted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity: float
    members: int
    halted: bool
    def __init__(self, name: _Optional[str] = ..., capacity: _Optional[float] = ..., members: _Optional[int] = ..., halted: _Optional[bool] = ...) -> None: ...

class StageStatus(_message.Message):
    __slots__ = ("name", "mode", "weight", "versions", "direction", "target", "skipped_members", "held_empty", "active_slot")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    HELD_EMPTY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SLOT_FIELD_NUMBER: _ClassVar[int]
    name: str
    mode: str
    weight: float
    versions: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    direction: str
    target: str
    skipped_members: int
    held_empty: bool
    active_slot: str
    def __init__(self, name: _Optional[str] = ..., mode: _Optional[str] = ..., weight: _Optional[float] = ..., versions: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ..., direction: _Optional[str] = ..., target: _Optional[str] = ..., skipped_members: _Optional[int] = ..., held_empty: _Optional[bool] = ..., active_slot: _Optional[str] = ...) -> None: ...

class EnvoyStatus(_message.Message):
    __slots__ = ("node_id", "acked", "nacks", "last_nack", "replica", "connected", "generation", "stale", "stale_since", "services")
    class AckedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    LAST_NACK_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    STALE_SINCE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    acked: _containers.ScalarMap[str, str]
    nacks: int
    last_nack: str
    replica: str
    connected: bool
    generation: int
    stale: str
    stale_since: float
    services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., acked: _Optional[_Mapping[str, str]] = ..., nacks: _Optional[int] = ..., last_nack: _Optional[str] = ..., replica: _Optional[str] = ..., connected: _Optional[bool] = ..., generation: _Optional[int] = ..., stale: _Optional[str] = ..., stale_since: _Optional[float] = ..., services: _Optional[_Iterable[str]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("service", "revision", "generation", "stages", "store_state", "time", "filter_config", "envoys", "leader", "duplicate_node_ids", "problems", "halts")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    STORE_STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ENVOYS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    HALTS_FIELD_NUMBER: _ClassVar[int]
    service: str
    revision: int
    generation: int
    stages: _containers.RepeatedCompositeFieldContainer[StageStatus]
    store_state: str
    time: float
    filter_config: str
    envoys: _containers.RepeatedCompositeFieldContainer[EnvoyStatus]
    leader: str
    duplicate_node_ids: _containers.RepeatedScalarFieldContainer[str]
    problems: _containers.RepeatedScalarFieldContainer[str]
    halts: _containers.RepeatedCompositeFieldContainer[HaltRecord]
    def __init__(self, service: _Optional[str] = ..., revision: _Optional[int] = ..., generation: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[StageStatus, _Mapping]]] = ..., store_state: _Optional[str] = ..., time: _Optional[float] = ..., filter_config: _Optional[str] = ..., envoys: _Optional[_Iterable[_Union[EnvoyStatus, _Mapping]]] = ..., leader: _Optional[str] = ..., duplicate_node_ids: _Optional[_Iterable[str]] = ..., problems: _Optional[_Iterable[str]] = ..., halts: _Optional[_Iterable[_Union[HaltRecord, _Mapping]]] = ...) -> None: ...

class WaitConvergedRequest(_message.Message):
    __slots__ = ("service", "timeout_seconds")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    service: str
    timeout_seconds: float
    def __init__(self, service: _Optional[str] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class WaitConvergedResponse(_message.Message):
    __slots__ = ("converged", "generation", "outstanding", "halts")
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_FIELD_NUMBER: _ClassVar[int]
    HALTS_FIELD_NUMBER: _ClassVar[int]
    converged: bool
    generation: int
    outstanding: _containers.RepeatedScalarFieldContainer[str]
    halts: _containers.RepeatedCompositeFieldContainer[HaltRecord]
    def __init__(self, converged: _Optional[bool] = ..., generation: _Optional[int] = ..., outstanding: _Optional[_Iterable[str]] = ..., halts: _Optional[_Iterable[_Union[HaltRecord, _Mapping]]] = ...) -> None: ...

class HaltRequest(_message.Message):
    __slots__ = ("service", "version", "rollback", "author", "reason")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    service: str
    version: str
    rollback: bool
    author: str
    reason: str
    def __init__(self, service: _Optional[str] = ..., version: _Optional[str] = ..., rollback: _Optional[bool] = ..., author: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("service", "version", "author", "reason")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    service: str
    version: str
    author: str
    reason: str
    def __init__(self, service: _Optional[str] = ..., version: _Optional[str] = ..., author: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class HaltRecord(_message.Message):
    __slots__ = ("version", "rollback", "author", "reason", "time", "figures", "stage", "error_ratio", "baseline_error_ratio", "requests")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATIO_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ERROR_RATIO_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    version: str
    rollback: bool
    author: str
    reason: str
    time: float
    figures: str
    stage: str
    error_ratio: float
    baseline_error_ratio: float
    requests: int
    def __init__(self, version: _Optional[str] = ..., rollback: _Optional[bool] = ..., author: _Optional[str] = ..., reason: _Optional[str] = ..., time: _Optional[float] = ..., figures: _Optional[str] = ..., stage: _Optional[str] = ..., error_ratio: _Optional[float] = ..., baseline_error_ratio: _Optional[float] = ..., requests: _Optional[int] = ...) -> None: ...

class HaltResponse(_message.Message):
    __slots__ = ("halts",)
    HALTS_FIELD_NUMBER: _ClassVar[int]
    halts: _containers.RepeatedCompositeFieldContainer[HaltRecord]
    def __init__(self, halts: _Optional[_Iterable[_Union[HaltRecord, _Mapping]]] = ...) -> None: ...
