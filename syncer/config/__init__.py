"""Load and validate syncer's TOML configuration; the only module that reads the environment."""

from __future__ import annotations

import functools
import importlib
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syncer.config.consistency import ConsistencyConfig, parse_consistency
from syncer.config.templates import check_template, template_fields
from syncer.errors import ConfigError

DEFAULT_CONFIG_PATH = "syncer.toml"


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
        object.__setattr__(self, "resolved_routes", self.routes + ((own,) if self.index else ()))

    def route_table(self, route: Route) -> TableConfig:
        """A route seen as a table of one index: what the per-index code (plan, setup) takes."""
        if not self.routes and route.index == self.index:
            return self
        return TableConfig(
            self.name,
            route.index,
            route.cache_keys,
            route.exclude_attributes,
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


_SECTIONS = {
    "opensearch",
    "redis",
    "deadletter",
    "resilience",
    "checkpoints",
    "consistency",
    "tables",
}


def _check_keys(section: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key {section}.{unknown[0]} in the configuration; "
            f"known keys of [{section}]: {', '.join(sorted(allowed))}"
        )


_TYPE_NAMES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _accepted_types(annotation: str) -> tuple[tuple[type, ...], bool]:
    """(types a value may have, whether it may be absent) from a field's annotation text."""
    parts = [part.strip() for part in annotation.split("|")]
    accepted: tuple[type, ...] = ()
    for part in parts:
        accepted += _TYPE_NAMES.get(part, ())
    return accepted, "None" in parts


def _section(cls: type[Any], name: str, raw: object) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{name}] must be a table of keys")
    fields = cls.__dataclass_fields__
    _check_keys(name, raw, set(fields))
    values = dict(raw)
    for key, value in raw.items():
        annotation = str(fields[key].type)
        if annotation == "SecretRef":
            values[key] = _secret_ref(f"{name}.{key}", value)
            continue
        accepted, optional = _accepted_types(annotation)
        wrong_bool = isinstance(value, bool) and bool not in accepted
        if wrong_bool or not (isinstance(value, accepted) or (optional and value is None)):
            expected = " or ".join(t.__name__ for t in accepted)
            raise ConfigError(f"{name}.{key} must be a {expected}, got {value!r:.40}")
        _check_number(f"{name}.{key}", value)
    return cls(**values)


# Lower bounds of the numeric settings: (key, smallest value, whether it may equal it). Every
# number must also be finite: NaN compares false with everything and slips past any bound.
_NUMBER_BOUNDS: dict[str, tuple[float, bool]] = {
    "opensearch.timeout_s": (0, False),
    "opensearch.bulk_max_actions": (1, True),
    "opensearch.bulk_max_bytes": (1, True),
    "redis.timeout_s": (0, False),
    "resilience.max_attempts": (1, True),
    "resilience.initial_backoff_s": (0, True),
    "resilience.max_backoff_s": (0, True),
    "resilience.max_retry_time_s": (0, False),
    "resilience.breaker_fail_max": (1, True),
    "resilience.breaker_reset_timeout_s": (0, False),
}


def _check_number(key: str, value: object) -> None:
    """Refuse a number that would break at run time: NaN, infinite, or below its bound."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    bound = _NUMBER_BOUNDS.get(key)
    if bound is None:
        return
    smallest, inclusive = bound
    if value < smallest or (value == smallest and not inclusive):
        relation = "at least" if inclusive else "greater than"
        raise ConfigError(f"{key} must be {relation} {smallest:g}, got {value!r}")


def _secret_ref(key: str, raw: object) -> SecretRef:
    """``password = {env = "NAME"}`` (or secrets_manager/ssm_parameter), or a plain string."""
    if isinstance(raw, str):
        return SecretRef(value=raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{key} must be a string or a table like {{ env = "NAME" }}')
    allowed = set(SecretRef.__dataclass_fields__)
    _check_keys(key, raw, allowed)
    if len(raw) != 1 or not all(isinstance(v, str) and v for v in raw.values()):
        raise ConfigError(f"{key} needs exactly one of {', '.join(sorted(allowed))}, as a string")
    return SecretRef(**raw)


def _check_url(key: str, url: str, schemes: set[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(
            f"{key} is not a valid URL (expected {' or '.join(sorted(schemes))}://host:port): "
            f"{parts.scheme or '?'}://{parts.hostname or '?'}"
        )


# https://opensearch.org/docs/latest/api-reference/index-apis/create-index/#index-naming-restrictions
_INDEX_FORBIDDEN = set('\\/*?"<>|,# :') | {chr(c) for c in range(32)} | {chr(127)}
# syncer derives names from the alias: "<alias>-000001" and "<alias>-reindexing" (the longest).
_DERIVED_SUFFIX_BYTES = len("-reindexing")
MAX_INDEX_NAME_BYTES = 255 - _DERIVED_SUFFIX_BYTES


def _check_index_name(key: str, index: str) -> None:
    """Refuse an alias name OpenSearch would refuse, or one too long for syncer's derived names."""
    problem = None
    if index in ("", ".", ".."):
        problem = "is empty, '.' or '..'"
    elif index[0] in "_-+":
        problem = "starts with '_', '-' or '+'"
    elif index != index.lower():
        problem = "has upper case letters"
    elif any(c in _INDEX_FORBIDDEN for c in index):
        bad = next(c for c in index if c in _INDEX_FORBIDDEN)
        problem = (
            f'contains {bad!r} (not allowed: \\ / * ? " < > | , # : space, control characters)'
        )
    elif len(index.encode("utf-8", "surrogatepass")) > MAX_INDEX_NAME_BYTES:
        problem = (
            f"has {len(index.encode('utf-8', 'surrogatepass'))} bytes; at most "
            f"{MAX_INDEX_NAME_BYTES} bytes, so that the names syncer derives from it "
            "('-reindexing', '-000001') stay within OpenSearch's 255"
        )
    if problem is not None:
        raise ConfigError(f"{key} {index!r:.80} is not a valid OpenSearch alias name: it {problem}")


def _table(position: int, raw: object) -> TableConfig:
    where = f"tables[{position}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table of keys")
    _check_keys(
        "tables",
        raw,
        {"name", "index", "cache_keys", "search_cache_keys", "exclude_attributes", "routes"},
    )
    routes = _routes(where, raw.get("routes"))
    # A routed table may leave out its own index: items no route selects are then skipped.
    for required in ("name", "index") if not routes or "index" in raw else ("name",):
        if not isinstance(raw.get(required), str) or not raw[required]:
            raise ConfigError(f"{where}.{required} is required and must be a non-empty string")
    cache_keys = raw.get("cache_keys", [])
    search_cache_keys = raw.get("search_cache_keys", [])
    exclude = raw.get("exclude_attributes", [])
    for key, values in (
        ("cache_keys", cache_keys),
        ("search_cache_keys", search_cache_keys),
        ("exclude_attributes", exclude),
    ):
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}.{key} must be a list of strings")
    for key, templates in (("cache_keys", cache_keys), ("search_cache_keys", search_cache_keys)):
        for template in templates:
            check_template(f"{where}.{key}", template)
    index = raw.get("index", "")
    if index:
        _check_index_name(f"{where}.index", index)
    for template in [*cache_keys, *search_cache_keys]:
        excluded = sorted(template_fields(template) & set(exclude))
        if excluded:
            raise ConfigError(
                f"table {raw['name']!r}: cache key template {template!r} uses attribute "
                f"{excluded[0]!r}, which exclude_attributes keeps out of the index, so its "
                "previous value cannot be read back to invalidate the old key; remove "
                f"{excluded[0]!r} from exclude_attributes (or from the template)"
            )
    return TableConfig(
        name=raw["name"],
        index=index,
        cache_keys=tuple(cache_keys),
        exclude_attributes=frozenset(exclude),
        search_cache_keys=tuple(search_cache_keys),
        routes=routes,
    )


def parse_config(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build a validated ``Config`` from parsed TOML; ``OPENSEARCH_URL``/``REDIS_URL`` override."""
    environ = os.environ if environ is None else environ
    _check_keys("top level", raw, _SECTIONS)
    for name in ("opensearch", "redis"):
        if not isinstance(raw.get(name) or {}, Mapping):
            raise ConfigError(f"[{name}] must be a table of keys")
    raw_opensearch = dict(raw.get("opensearch") or {})
    raw_redis = dict(raw.get("redis") or {})
    if environ.get("OPENSEARCH_URL"):
        raw_opensearch["url"] = environ["OPENSEARCH_URL"]
    if environ.get("REDIS_URL"):
        raw_redis["url"] = environ["REDIS_URL"]
    # template.yaml passes Secrets Manager ARNs this way; they win over the file's password.
    if environ.get("SYNCER_OPENSEARCH_SECRET_ARN"):
        raw_opensearch["password"] = {"secrets_manager": environ["SYNCER_OPENSEARCH_SECRET_ARN"]}
    if environ.get("SYNCER_REDIS_SECRET_ARN"):
        raw_redis["password"] = {"secrets_manager": environ["SYNCER_REDIS_SECRET_ARN"]}
    raw_deadletter = raw.get("deadletter")
    if environ.get("SYNCER_DEADLETTER_QUEUE_URL"):  # set by template.yaml
        raw_deadletter = {"sqs_queue_url": environ["SYNCER_DEADLETTER_QUEUE_URL"]}
    opensearch: OpenSearchConfig = _section(OpenSearchConfig, "opensearch", raw_opensearch)
    redis: RedisConfig = _section(RedisConfig, "redis", raw_redis)
    deadletter: DeadLetterConfig = _section(DeadLetterConfig, "deadletter", raw_deadletter)
    resilience: ResilienceConfig = _section(ResilienceConfig, "resilience", raw.get("resilience"))
    checkpoints: CheckpointConfig = _section(
        CheckpointConfig, "checkpoints", raw.get("checkpoints")
    )
    if opensearch.auth not in ("none", "basic", "sigv4"):
        raise ConfigError(
            f'opensearch.auth must be "none", "basic" or "sigv4", got {opensearch.auth!r}'
        )
    if opensearch.auth == "basic" and not (opensearch.username and opensearch.password.configured):
        raise ConfigError(
            'opensearch.auth = "basic" needs opensearch.username and opensearch.password'
        )
    if opensearch.aws_service not in ("es", "aoss"):
        raise ConfigError(
            f'opensearch.aws_service must be "es" or "aoss", got {opensearch.aws_service!r}'
        )
    if redis.on_failure not in ("retry", "deadletter"):
        raise ConfigError(
            f'redis.on_failure must be "retry" or "deadletter", got {redis.on_failure!r}'
        )
    _check_url("opensearch.url", opensearch.url, {"http", "https"})
    _check_url("redis.url", redis.url, {"redis", "rediss"})
    if redis.cluster not in ("auto", True, False):
        raise ConfigError(f'redis.cluster must be "auto", true or false, got {redis.cluster!r}')
    if redis.wait_replicas < 0:
        raise ConfigError(f"redis.wait_replicas must be 0 or more, got {redis.wait_replicas}")
    if redis.cluster is True and redis_database(redis.url) != 0:
        raise ConfigError(
            f"redis.url selects database {redis_database(redis.url)}, but a Redis Cluster "
            "has only database 0 (use /0 or no path)"
        )
    if deadletter.sqs_queue_url:
        deadletter = DeadLetterConfig(file=None, sqs_queue_url=deadletter.sqs_queue_url)
    elif not deadletter.file:
        raise ConfigError("[deadletter] needs file or sqs_queue_url")
    raw_tables = raw.get("tables")
    if not isinstance(raw_tables, list) or not raw_tables:
        raise ConfigError(
            "the configuration needs at least one [[tables]] entry with name and index"
        )
    tables = tuple(_table(i, t) for i, t in enumerate(raw_tables))
    names = [t.name for t in tables]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"table {duplicates[0]!r} is configured more than once")
    indices: dict[str, str] = {}
    for table in [t for t in tables if not t.routes]:  # routed ones: _check_route_indices
        other = indices.setdefault(table.index, table.name)
        if other != table.name:
            # Ids and versions are per table: two tables' items would overwrite one another.
            raise ConfigError(
                f"tables {other!r} and {table.name!r} both name index {table.index!r}; "
                "each table needs its own index (documents are identified by the item key "
                "alone, so two tables in one index would overwrite each other)"
            )
    _check_route_indices(tables)
    return Config(
        tables=tables,
        opensearch=opensearch,
        redis=redis,
        deadletter=deadletter,
        resilience=resilience,
        checkpoints=checkpoints,
        consistency=parse_consistency(raw.get("consistency"), environ),
    )


# -- routes of single-table designs (issue 14): one index per kind of item -----------------

MATCH_OPERATORS = ("begins_with", "equals")
_ROUTE_KEYS = {
    "match",
    "index",
    "cache_keys",
    "search_cache_keys",
    "exclude_attributes",
    "transform",
}


def _routes(where: str, raw: object) -> tuple[Route, ...]:
    """``[[tables.routes]]``: each route's match, index, cache keys, exclusions and transform."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise ConfigError(f"{where}.routes must be a list of tables ([[tables.routes]])")
    return tuple(_route(f"{where}.routes[{i}]", r) for i, r in enumerate(raw))


def _route(where: str, raw: Mapping[str, Any]) -> Route:
    _check_keys(where, raw, _ROUTE_KEYS)
    index = raw.get("index")
    if not isinstance(index, str) or not index:
        raise ConfigError(f"{where}.index is required and must be a non-empty string")
    _check_index_name(f"{where}.index", index)
    if "match" not in raw:
        raise ConfigError(f'{where}.match is required, e.g. {{ attribute = "type", equals = "x" }}')
    cache_keys = _strings(f"{where}.cache_keys", raw.get("cache_keys", []))
    search_cache_keys = _strings(f"{where}.search_cache_keys", raw.get("search_cache_keys", []))
    for key, templates in (("cache_keys", cache_keys), ("search_cache_keys", search_cache_keys)):
        for template in templates:
            check_template(f"{where}.{key}", template)
    exclude = _strings(f"{where}.exclude_attributes", raw.get("exclude_attributes", []))
    transform = raw.get("transform")
    if transform is not None:
        if not isinstance(transform, str):
            raise ConfigError(f'{where}.transform must be a string "module:function"')
        try:
            import_transform(transform)
        except ConfigError as error:
            raise ConfigError(f"{where}.transform: {error}") from None
    return Route(
        index=index,
        match=_match(f"{where}.match", raw["match"]),
        cache_keys=tuple(cache_keys),
        exclude_attributes=frozenset(exclude),
        transform=transform,
        search_cache_keys=tuple(search_cache_keys),
    )


def _match(where: str, raw: object) -> RouteMatch:
    """``{ attribute = "sk", begins_with = "PRODUCT#" }`` or ``{ attribute = "type", equals = ... }``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where} must be a table like {{ attribute = "type", equals = "x" }}')
    unknown = sorted(set(raw) - {"attribute", *MATCH_OPERATORS})
    if unknown:
        raise ConfigError(
            f"unknown match operator {where}.{unknown[0]}; known: {', '.join(MATCH_OPERATORS)}"
        )
    attribute = raw.get("attribute")
    if not isinstance(attribute, str) or not attribute:
        raise ConfigError(f"{where}.attribute is required and must be a non-empty string")
    operators = [name for name in MATCH_OPERATORS if name in raw]
    if len(operators) != 1:
        raise ConfigError(f"{where} needs exactly one of {', '.join(MATCH_OPERATORS)}")
    value = raw[operators[0]]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{operators[0]} must be a string")
    return RouteMatch(attribute, operators[0], value)


def _strings(key: str, values: object) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key} must be a list of strings")
    return values


def _check_route_indices(tables: tuple[TableConfig, ...]) -> None:
    """Every index is written by one route of one table: refuse any index named twice."""
    named: dict[str, tuple[str, bool]] = {}  # index -> (the key naming it, of a routed table)
    for position, table in enumerate(tables):
        keys = [(f"tables[{position}].index", table.index)] if table.index else []
        keys += [
            (f"tables[{position}].routes[{i}].index", r.index) for i, r in enumerate(table.routes)
        ]
        for key, index in keys:
            other, other_routed = named.setdefault(index, (key, bool(table.routes)))
            if other != key and (table.routes or other_routed):  # plain pairs: refused above
                raise ConfigError(
                    f"{key} names index {index!r}, already named by {other}; each route needs "
                    "its own index (one document id per item and index)"
                )


@functools.cache  # imported once per process
def import_transform(spec: str) -> Callable[[dict[str, Any]], Any]:
    """The callable ``module:function`` names; ``ConfigError`` saying why it cannot be had."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ConfigError(f'{spec!r} is not of the form "module:function"')
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever the user module raises at import
        raise ConfigError(f"{spec!r} cannot be imported: {type(error).__name__}: {error}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"{spec!r}: module {module_name!r} has no callable {function_name!r}")
    return function  # type: ignore[no-any-return]


def redis_database(url: str) -> int:
    """The database number a ``redis://host:port/N`` URL selects (0 without a path)."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``--config`` wins, then ``SYNCER_CONFIG``, then ``./syncer.toml``."""
    environ = os.environ if environ is None else environ
    return Path(explicit or environ.get("SYNCER_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file."""
    path = config_path(explicit, environ)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} not found (set --config or SYNCER_CONFIG)"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from None
    return parse_config(raw, environ)


# -- the process environment beyond the file (read here so no other module reads it) ---------


def running_in_lambda(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a Lambda function (the runtime sets ``AWS_LAMBDA_FUNCTION_NAME``)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def emf_metrics_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the handler prints an EMF metrics line per batch (``SYNCER_METRICS``, default emf)."""
    environ = os.environ if environ is None else environ
    return environ.get("SYNCER_METRICS", "emf") == "emf"


def aws_endpoint_overridden(environ: Mapping[str, str] | None = None) -> bool:
    """Whether AWS calls go to a local emulator (``AWS_ENDPOINT_URL`` or its DynamoDB form)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("AWS_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL_DYNAMODB"))
