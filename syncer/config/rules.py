"""The refusals that compare values: each a small function of the parsed ``Config``.

``check_rules`` runs them all in order; each raises ``ConfigError`` naming the keys at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from syncer.config.names import derived_from
from syncer.config.schema import Config, TableConfig
from syncer.config.templates import template_fields
from syncer.errors import ConfigError


def redis_database(url: str) -> int:
    """The database number a ``redis://host:port/N`` URL selects, 0 without a path; a
    ``?db=N`` query wins over the path, as in redis-py's ``parse_url``."""
    parts = urlsplit(url)
    selected = parse_qs(parts.query).get("db", [parts.path.strip("/")])[0]
    return int(selected) if selected.isdigit() else 0


def cluster_database_message(database: int) -> str:
    """Why a Redis Cluster cannot take a URL selecting ``database`` (config and sinks.cache)."""
    return (
        f"redis.url selects database {database}, but a Redis Cluster has only database 0 "
        "(use /0 or no path)"
    )


# -- [opensearch], [redis], [deadletter] ------------------------------------------------------


def _known_opensearch_auth(config: Config) -> None:
    auth = config.opensearch.auth
    if auth not in ("none", "basic", "sigv4"):
        raise ConfigError(f'opensearch.auth must be "none", "basic" or "sigv4", got {auth!r}')


def _basic_auth_has_credentials(config: Config) -> None:
    opensearch = config.opensearch
    if opensearch.auth == "basic" and not (opensearch.username and opensearch.password.configured):
        raise ConfigError(
            'opensearch.auth = "basic" needs opensearch.username and opensearch.password'
        )


def _known_aws_service(config: Config) -> None:
    service = config.opensearch.aws_service
    if service not in ("es", "aoss"):
        raise ConfigError(f'opensearch.aws_service must be "es" or "aoss", got {service!r}')


def _known_redis_on_failure(config: Config) -> None:
    on_failure = config.redis.on_failure
    if on_failure not in ("retry", "deadletter"):
        raise ConfigError(f'redis.on_failure must be "retry" or "deadletter", got {on_failure!r}')


def _check_url(key: str, url: str, schemes: set[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(
            f"{key} is not a valid URL (expected {' or '.join(sorted(schemes))}://host:port): "
            f"{parts.scheme or '?'}://{parts.hostname or '?'}"
        )


def _valid_urls(config: Config) -> None:
    _check_url("opensearch.url", config.opensearch.url, {"http", "https"})
    _check_url("redis.url", config.redis.url, {"redis", "rediss"})


def _known_redis_cluster(config: Config) -> None:
    cluster = config.redis.cluster
    if cluster not in ("auto", True, False):
        raise ConfigError(f'redis.cluster must be "auto", true or false, got {cluster!r}')


def _wait_replicas_not_negative(config: Config) -> None:
    if config.redis.wait_replicas < 0:
        raise ConfigError(
            f"redis.wait_replicas must be 0 or more, got {config.redis.wait_replicas}"
        )


def _cluster_on_database_0(config: Config) -> None:
    # With cluster = "auto" only the server can tell: sinks.cache refuses it on first use.
    database = redis_database(config.redis.url)
    if config.redis.cluster is True and database != 0:
        raise ConfigError(cluster_database_message(database))


def _deadletter_has_destination(config: Config) -> None:
    if not (config.deadletter.sqs_queue_url or config.deadletter.file):
        raise ConfigError("[deadletter] needs file or sqs_queue_url")


# -- [[tables]] -------------------------------------------------------------------------------


def _tables_configured_once(config: Config) -> None:
    names = [table.name for table in config.tables]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"table {duplicates[0]!r} is configured more than once")


def _plain_tables_in_own_indices(config: Config) -> None:
    indices: dict[str, str] = {}
    for table in [t for t in config.tables if not t.routes]:  # routed: _routes_in_own_indices
        other = indices.setdefault(table.index, table.name)
        if other != table.name:
            # Ids and versions are per table: two tables' items would overwrite one another.
            raise ConfigError(
                f"tables {other!r} and {table.name!r} both name index {table.index!r}; "
                "each table needs its own index (documents are identified by the item key "
                "alone, so two tables in one index would overwrite each other)"
            )


def _index_keys(config: Config) -> Iterator[tuple[str, str, bool]]:
    """(the key naming an index, the index, whether its table is routed), in file order."""
    for position, table in enumerate(config.tables):
        if table.index:
            yield f"tables[{position}].index", table.index, bool(table.routes)
        for i, route in enumerate(table.routes):
            yield f"tables[{position}].routes[{i}].index", route.index, True


def _routes_in_own_indices(config: Config) -> None:
    """Every index is written by one route of one table: refuse any index named twice."""
    named: dict[str, tuple[str, bool]] = {}  # index -> (the key naming it, of a routed table)
    for key, index, routed in _index_keys(config):
        other, other_routed = named.setdefault(index, (key, routed))
        if other != key and (routed or other_routed):  # plain pairs: _plain_tables_in_own_indices
            raise ConfigError(
                f"{key} names index {index!r}, already named by {other}; each route needs "
                "its own index (one document id per item and index)"
            )


def _no_index_named_like_derived_names(config: Config) -> None:
    """An alias that is another's reindex alias or versioned index would share its writes."""
    keys = list(_index_keys(config))
    for key, index, _ in keys:
        for other_key, other, _ in keys:
            if derived_from(other, index):
                raise ConfigError(
                    f"{key} names index {index!r}, which syncer derives from {other_key} "
                    f"({other!r}: its reindex alias {other}-reindexing and versioned indices "
                    f"{other}-000001, ...); the two would write into one index, so rename one"
                )


def _routed_table_keys_have_an_index(config: Config) -> None:
    """A routed table's own cache keys belong to its own (catch-all) index: without one they
    would never be rendered."""
    for position, table in enumerate(config.tables):
        if not table.routes or table.index:
            continue
        for key in ("cache_keys", "search_cache_keys"):
            if getattr(table, key):
                raise ConfigError(
                    f"tables[{position}].{key} is set, but table {table.name!r} has routes and "
                    f"no index of its own, so no item would render them; put them on the routes "
                    f"(tables[{position}].routes[N].{key}), or give the table an index for the "
                    "items no route selects"
                )


def _cache_keys_avoid_excluded(config: Config) -> None:
    """A template may not use an excluded attribute: its previous value could not be read back
    from the index to invalidate the old key. Routes are checked like tables, with their
    table's exclusions (schema.TableConfig)."""
    for position, table in enumerate(config.tables):
        where = f"tables[{position}]"
        _check_excluded(where, table, table.cache_keys, table.exclude_attributes)
        _check_excluded(where, table, table.search_cache_keys, table.exclude_attributes, "search_")
        for i in range(len(table.routes)):
            route = table.resolved_routes[i]  # as the pipeline uses it
            where = f"tables[{position}].routes[{i}]"
            _check_excluded(where, table, route.cache_keys, route.exclude_attributes)
            _check_excluded(
                where, table, route.search_cache_keys, route.exclude_attributes, "search_"
            )


def _check_excluded(
    where: str,
    table: TableConfig,
    templates: tuple[str, ...],
    excluded: frozenset[str],
    prefix: str = "",
) -> None:
    for template in templates:
        named = sorted(template_fields(template) & excluded)
        if named:
            raise ConfigError(
                f"{where}.{prefix}cache_keys: table {table.name!r}: cache key template "
                f"{template!r} uses attribute {named[0]!r}, which exclude_attributes keeps out "
                "of the index, so its previous value cannot be read back to invalidate the old "
                f"key; remove {named[0]!r} from exclude_attributes (or from the template)"
            )


RULES: tuple[Callable[[Config], None], ...] = (
    _known_opensearch_auth,
    _basic_auth_has_credentials,
    _known_aws_service,
    _known_redis_on_failure,
    _valid_urls,
    _known_redis_cluster,
    _wait_replicas_not_negative,
    _cluster_on_database_0,
    _deadletter_has_destination,
    _tables_configured_once,
    _plain_tables_in_own_indices,
    _routes_in_own_indices,
    _no_index_named_like_derived_names,
    _routed_table_keys_have_an_index,
    _cache_keys_avoid_excluded,
)


def check_rules(config: Config) -> Config:
    """``config`` itself once every rule passed."""
    for rule in RULES:
        rule(config)
    return config
