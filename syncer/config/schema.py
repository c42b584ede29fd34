"""The configuration as frozen dataclasses: one per TOML section, tables and their routes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from syncer.config.consistency import ConsistencyConfig
from syncer.config.templates import Template, parse_templates, template_fields
from syncer.errors import ConfigError

MATCH_OPERATORS = ("begins_with", "equals")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a password comes from: never the file itself in production, and never logged."""

    value: str | None = None  # given inline (local development only)
    env: str | None = None  # the name of an environment variable
    secrets_manager: str | None = None  # a Secrets Manager secret id or ARN
    ssm_parameter: str | None = None  # an SSM SecureString parameter name

    @property
    def configured(self) -> bool:
        return any((self.value, self.env, self.secrets_manager, self.ssm_parameter))


@dataclass(frozen=True, slots=True)
class OpenSearchConfig:
    url: str = "http://127.0.0.1:9200"
    timeout_s: float = 30.0
    bulk_max_actions: int = 5000
    bulk_max_bytes: int = 5 * 1024 * 1024
    # Documents whose last state read or written is kept, so that a stream batch's update of
    # one of them is written without an _mget first (docs/ordering.md, "Mechanism"); 0: off.
    known_states: int = 10_000
    # "none", "basic" (username + password) or "sigv4" (IAM: Amazon OpenSearch Service)
    auth: str = "none"
    username: str | None = None
    password: SecretRef = field(default_factory=SecretRef)
    aws_service: str = "es"  # "aoss" for OpenSearch Serverless collections
    aws_region: str | None = None  # default: the AWS_REGION of the function
    verify_certs: bool = True
    ca_certs: str | None = None  # a CA bundle for self-managed clusters


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"  # rediss:// for TLS
    timeout_s: float = 2.0
    username: str | None = None  # a Redis ACL user
    password: SecretRef = field(default_factory=SecretRef)
    ca_certs: str | None = None
    # "auto": ask the server on first connection (INFO cluster); true/false force the client kind.
    cluster: str | bool = "auto"
    # Replicas each primary must confirm an invalidation to (WAIT) before its records are
    # acknowledged; 0 trusts the primary's answer (its replication is asynchronous).
    wait_replicas: int = 0
    # "retry": records whose invalidation failed are reported, so the cache is never left stale.
    # "deadletter": they go to the dead letters; indexing goes on while Redis is down.
    on_failure: str = "retry"


@dataclass(frozen=True, slots=True)
class DeadLetterConfig:
    file: str | None = "deadletter.jsonl"
    sqs_queue_url: str | None = None


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """Retry and circuit-breaker settings shared by every downstream call."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    max_retry_time_s: float = 30.0
    breaker_fail_max: int = 5
    breaker_reset_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """Where ``syncer run`` keeps each shard's position: a local file, or a Redis hash."""

    file: str = ".syncer-checkpoints.json"
    redis_key: str | None = None


# Sets of key attribute names a route keeps its templates_outside for: a table has one key
# schema (a redriven dead letter of a re-created table may bring a second).
_MAX_KEY_SCHEMAS = 8


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Which items a route selects: ``attribute`` equals ``value``, or begins with it."""

    attribute: str
    operator: str  # one of MATCH_OPERATORS
    value: str


@dataclass(frozen=True, slots=True)
class Route:
    """One index of a table: the items it selects, their cache keys and how to shape them."""

    index: str
    match: RouteMatch | None = None  # None: every item (a table's own index, tried last)
    cache_keys: tuple[str, ...] = ()
    exclude_attributes: frozenset[str] = frozenset()
    transform: str | None = None  # "module:function", see syncer.core.routes
    search_cache_keys: tuple[str, ...] = ()  # as the table's, for this route's items
    # Made on first use (the cache keys of every change are rendered with them): ``templates``,
    # and ``templates_outside`` for the few sets of key attribute names a table has.
    _templates: tuple[Template, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _outside: dict[tuple[str, ...], tuple[Template, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def templates(self) -> tuple[Template, ...]:
        """Its item and search cache key templates, parsed (once, on first use)."""
        parsed = self._templates
        if parsed is None:
            parsed = parse_templates(self.cache_keys + self.search_cache_keys)
            object.__setattr__(self, "_templates", parsed)
        return parsed

    def templates_outside(self, names: tuple[str, ...]) -> tuple[Template, ...]:
        """Those of ``templates`` that fill an attribute not in ``names``, in their order."""
        found = self._outside.get(names)
        if found is None:
            known = set(names)
            found = tuple(
                parsed
                for parsed in self.templates
                if any(name is not None and name not in known for _, name in parsed)
            )
            if len(self._outside) < _MAX_KEY_SCHEMAS:
                self._outside[names] = found
        return found


@dataclass(frozen=True, slots=True)
class TableConfig:
    name: str
    index: str  # "" for a routed table that skips the items no route selects
    cache_keys: tuple[str, ...] = ()
    exclude_attributes: frozenset[str] = frozenset()
    # Keys of caches filled from search results: invalidated only once the batch's writes are
    # visible to search (docs/cache-consistency.md).
    search_cache_keys: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()  # as configured, without the table's own index
    # ``syncer run`` follows this Kinesis stream (a name or an ARN) for the table's changes
    # instead of its DynamoDB stream (docs/sources.md); None: the DynamoDB stream.
    kinesis_stream: str | None = None
    # The routes in the order they are tried, the table's own index (if any) last; a table
    # without routes has one, to its index. Computed once: the pipeline asks per change.
    resolved_routes: tuple[Route, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = Route(
            self.index,
            None,
            self.cache_keys,
            self.exclude_attributes,
            search_cache_keys=self.search_cache_keys,
        )
        # The table's exclusions hold for every route: a data-protection setting is never
        # silently dropped because the table is routed (docs/routes.md).
        routes = tuple(
            replace(route, exclude_attributes=route.exclude_attributes | self.exclude_attributes)
            for route in self.routes
        )
        object.__setattr__(self, "resolved_routes", routes + ((own,) if self.index else ()))

    def route_table(self, route: Route) -> TableConfig:
        """A route seen as a table of one index: what the per-index code (plan, setup) takes."""
        if not self.routes and route.index == self.index:
            return self
        return TableConfig(
            self.name,
            route.index,
            route.cache_keys,
            route.exclude_attributes | self.exclude_attributes,
            search_cache_keys=route.search_cache_keys,
        )

    @property
    def cache_key_fields(self) -> frozenset[str]:
        """Attribute names the cache key templates (item and search-derived) refer to."""
        return frozenset(
            name
            for template in (*self.cache_keys, *self.search_cache_keys)
            for name in template_fields(template)
        )


@dataclass(frozen=True, slots=True)
class Config:
    tables: tuple[TableConfig, ...]
    opensearch: OpenSearchConfig = field(default_factory=OpenSearchConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    deadletter: DeadLetterConfig = field(default_factory=DeadLetterConfig)
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)

    def table(self, name: str) -> TableConfig | None:
        """The configuration of table ``name``, or None when it is not configured."""
        for table in self.tables:
            if table.name == name:
                return table
        return None

    def require_table(self, name: str) -> TableConfig:
        """The configuration of table ``name``; ``ConfigError`` naming the configured ones."""
        table = self.table(name)
        if table is None:
            configured = ", ".join(t.name for t in self.tables) or "none"
            raise ConfigError(f"table {name!r} is not configured (configured: {configured})")
        return table
