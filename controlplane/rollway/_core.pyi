"""Type stub for the C++ routing core extension (see native/include/rollway/router.h)."""

from collections.abc import Mapping, Sequence
from typing import Literal, NotRequired, TypedDict

from typing_extensions import Buffer  # collections.abc.Buffer is Python 3.12; the package supports 3.11

Reason = Literal[
    "hashed", "affinity", "kept", "moved_forward", "moved_rollback",
    "unavailable", "blue_green", "override", "no_capacity",
]
IdStatus = Literal["valid", "absent", "malformed", "expired", "bad_signature"]
OverrideStatus = Literal["none", "applied", "rejected"]

def murmur3_32(data: str | Buffer, seed: int = 0) -> int:
    """MurmurHash3 x86_32, unsigned; equals ``mmh3.hash(data, seed, signed=False)``."""

def murmur3_128(data: str | Buffer, seed: int = 0) -> int:
    """MurmurHash3 x64_128, unsigned; equals ``mmh3.hash128(data, seed, True, False)``."""

def hmac_sha256(key: bytes, message: bytes) -> bytes: ...
def siphash24(key: bytes, message: bytes) -> int: ...
def new_routing_id(
    now: float | None = None,
    signing_secret: str | bytes | None = None,
    random_bits: int | None = None,
) -> str:
    """Mint a routing-id token issued at ``now`` (unix seconds; default: now)."""

class ParsedRoutingId(TypedDict):
    status: IdStatus
    issued_at: int | None
    routing_key: str | None

def parse_routing_id(
    token: str, now: float, ttl_seconds: int = 86400, signing_secret: str | bytes | None = None
) -> ParsedRoutingId: ...

class Decision:
    @property
    def stage(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...
    @property
    def cluster(self) -> str | None: ...
    @property
    def new_routing_id(self) -> str | None:
        """Set when the id was absent, malformed, expired or forged: send it as Set-Cookie."""
    @property
    def refresh(self) -> bool: ...
    @property
    def reason(self) -> Reason: ...
    @property
    def id_status(self) -> IdStatus: ...
    @property
    def keyed(self) -> bool:
        """Routed by the routing-key header (a cookie-less client): no cookie is set."""
    @property
    def override(self) -> OverrideStatus: ...
    @property
    def stage_index(self) -> int: ...
    @property
    def version_index(self) -> int: ...

class BatchDecisions:
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Decision: ...
    @property
    def stage_index(self) -> list[int]: ...
    @property
    def version_index(self) -> list[int]: ...
    @property
    def stage(self) -> list[str | None]: ...
    @property
    def version(self) -> list[str | None]: ...
    @property
    def cluster(self) -> list[str | None]: ...
    @property
    def refresh(self) -> list[bool]: ...
    @property
    def reason(self) -> list[Reason]: ...
    @property
    def new_routing_id(self) -> list[str | None]: ...

class VersionInfo(TypedDict):
    name: str
    capacity: float
    cluster: str
    admitted: bool
    slot: NotRequired[str]  # blue-green only

class DirectionInfo(TypedDict):
    state: Literal["steady", "forward", "rollback"]
    target: NotRequired[str]

class StageInfo(TypedDict):
    name: str
    weight: float
    mode: Literal["rolling", "blue_green"]
    takes_traffic: bool
    versions: list[VersionInfo]
    direction: NotRequired[DirectionInfo]  # rolling only
    active: NotRequired[str]  # blue-green only: the active slot
    next: NotRequired[str]  # blue-green only, during a switch

class Router:
    def __init__(self, config_json: str, secrets: Mapping[str, str | bytes] | None = None) -> None:
        """Parse and validate a filter config; raises ValueError naming the bad field."""
    def route(
        self,
        routing_id: str | None = None,
        wanted_version: str | None = None,
        now: float | None = None,
        *,
        version_cookie: str | None = None,
        override: str | None = None,
        random_bits: int | None = None,
        stage_cookie: str | None = None,
        header_key: str | None = None,
    ) -> Decision: ...
    def route_many(
        self,
        routing_ids: Sequence[str | None],
        wanted_versions: Sequence[str | None] | None = None,
        now: float | None = None,
        *,
        version_cookies: Sequence[str | None] | None = None,
        stage_cookies: Sequence[str | None] | None = None,
    ) -> BatchDecisions: ...
    def bench_route_loop(
        self, routing_ids: Sequence[str], wanted_versions: Sequence[str], rounds: int, now: float
    ) -> float:
        """Nanoseconds per decision of the C++ core in a C++ loop (benchmarks only)."""
    @property
    def service(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def routing_cookie(self) -> str: ...
    @property
    def ttl_seconds(self) -> int: ...
    @property
    def version_cookie(self) -> str: ...
    @property
    def stage_cookie(self) -> str: ...
    @property
    def cookie_path(self) -> str: ...
    @property
    def cluster_header(self) -> str: ...
    @property
    def stages(self) -> list[StageInfo]: ...
