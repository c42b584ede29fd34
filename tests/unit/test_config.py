"""The TOML configuration is validated at start, with errors that name the offending key."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from syncer.config import (
    Config,
    DeadLetterConfig,
    OpenSearchConfig,
    RedisConfig,
    ResilienceConfig,
    TableConfig,
    load_config,
    parse_config,
)
from syncer.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]

# The example of the README's Configuration section.
README_EXAMPLE = """
[opensearch]
url = "http://127.0.0.1:9200"
timeout_s = 30
bulk_max_actions = 5000
bulk_max_bytes = 5242880

[redis]
url = "redis://127.0.0.1:6379/0"
timeout_s = 2

[deadletter]
file = "deadletter.jsonl"

[resilience]
max_attempts = 5
initial_backoff_s = 0.1
max_backoff_s = 2.0
max_retry_time_s = 30.0
breaker_fail_max = 5
breaker_reset_timeout_s = 30

[[tables]]
name = "catalog"
index = "catalog"
cache_keys = ["product:{pk}", "product:{pk}:{sk}", "category:{category}"]
exclude_attributes = ["cost"]
"""


def _example() -> dict[str, Any]:
    return tomllib.loads(README_EXAMPLE)


def test_readme_example_parses_to_the_documented_values() -> None:
    """The README's example configuration parses to exactly the values it spells out."""
    # given the README example
    raw = _example()
    # when it is parsed without environment overrides
    config = parse_config(raw, environ={})
    # then every section has the documented values
    assert config == Config(
        tables=(
            TableConfig(
                name="catalog",
                index="catalog",
                cache_keys=("product:{pk}", "product:{pk}:{sk}", "category:{category}"),
                exclude_attributes=frozenset({"cost"}),
            ),
        ),
        opensearch=OpenSearchConfig(
            url="http://127.0.0.1:9200", timeout_s=30, bulk_max_actions=5000, bulk_max_bytes=5242880
        ),
        redis=RedisConfig(url="redis://127.0.0.1:6379/0", timeout_s=2),
        deadletter=DeadLetterConfig(file="deadletter.jsonl"),
        resilience=ResilienceConfig(
            max_attempts=5,
            initial_backoff_s=0.1,
            max_backoff_s=2.0,
            max_retry_time_s=30.0,
            breaker_fail_max=5,
            breaker_reset_timeout_s=30,
        ),
    )


def test_repository_syncer_toml_loads() -> None:
    """The syncer.toml at the repository root loads and configures the catalog table."""
    # given the repository's syncer.toml
    path = REPO_ROOT / "syncer.toml"
    # when it is loaded without environment overrides
    config = load_config(str(path), environ={})
    # then it configures the catalog table with its cache keys
    table = config.table("catalog")
    assert table is not None
    assert table.index == "catalog"
    assert table.cache_key_fields == frozenset({"pk", "sk", "category"})
    assert config.table("orders") is None


def test_minimal_config_takes_defaults() -> None:
    """Only a table is required; every other setting has a default."""
    # given a configuration with one table and nothing else
    raw = {"tables": [{"name": "catalog", "index": "catalog"}]}
    # when it is parsed
    config = parse_config(raw, environ={})
    # then the sections take their defaults
    assert config.opensearch == OpenSearchConfig()
    assert config.redis == RedisConfig()
    assert config.deadletter == DeadLetterConfig()
    assert config.resilience == ResilienceConfig()


def test_environment_overrides_the_urls() -> None:
    """OPENSEARCH_URL and REDIS_URL replace the URLs of the file."""
    # given the example and both URL variables
    environ = {
        "OPENSEARCH_URL": "https://search.internal:9243",
        "REDIS_URL": "rediss://cache.internal:6380/2",
    }
    # when it is parsed
    config = parse_config(_example(), environ=environ)
    # then the environment wins
    assert config.opensearch.url == "https://search.internal:9243"
    assert config.redis.url == "rediss://cache.internal:6380/2"


def test_empty_environment_variable_does_not_override() -> None:
    """An empty OPENSEARCH_URL leaves the file's URL in place."""
    # given an empty override
    # when the example is parsed
    config = parse_config(_example(), environ={"OPENSEARCH_URL": ""})
    # then the file's URL stays
    assert config.opensearch.url == "http://127.0.0.1:9200"


@pytest.mark.parametrize(
    ("where", "key", "named"),
    [
        (None, "opensearh", "top level.opensearh"),
        ("opensearch", "bulk_max_action", "opensearch.bulk_max_action"),
        ("redis", "passwd", "redis.passwd"),
        ("deadletter", "queue", "deadletter.queue"),
        ("resilience", "retries", "resilience.retries"),
        ("tables", "exclude", "tables.exclude"),
    ],
)
def test_unknown_key_is_refused_by_name(where: str | None, key: str, named: str) -> None:
    """A misspelt or unknown key is refused with its section and name."""
    # given the example with one unknown key
    raw = _example()
    if where is None:
        raw[key] = {}
    elif where == "tables":
        raw["tables"][0][key] = ["x"]
    else:
        raw[where][key] = 1
    # when it is parsed
    # then the error names the key
    with pytest.raises(ConfigError, match=f"unknown key {named}"):
        parse_config(raw, environ={})


@pytest.mark.parametrize("tables", [None, []], ids=["missing", "empty"])
def test_configuration_without_tables_is_refused(tables: object) -> None:
    """A configuration that names no table is refused, saying [[tables]] is needed."""
    # given the example without tables
    raw = _example()
    if tables is None:
        del raw["tables"]
    else:
        raw["tables"] = tables
    # when it is parsed
    # then the error asks for a [[tables]] entry
    with pytest.raises(ConfigError, match=r"\[\[tables\]\]"):
        parse_config(raw, environ={})


@pytest.mark.parametrize("missing", ["index", "name"])
def test_table_without_name_or_index_is_refused(missing: str) -> None:
    """A table entry without its name or index is refused, naming the entry and the key."""
    # given a table entry missing a required key
    raw = _example()
    del raw["tables"][0][missing]
    # when it is parsed
    # then the error names tables[0] and the key
    with pytest.raises(ConfigError, match=rf"tables\[0\]\.{missing} is required"):
        parse_config(raw, environ={})


def test_table_configured_twice_is_refused() -> None:
    """Two entries for one table are refused."""
    # given two entries for catalog
    raw = _example()
    raw["tables"].append(copy.deepcopy(raw["tables"][0]))
    # when it is parsed
    # then the duplicate is named
    with pytest.raises(ConfigError, match="'catalog' is configured more than once"):
        parse_config(raw, environ={})


def test_two_tables_in_one_index_are_refused() -> None:
    """Two tables naming one index are refused at start (issue 10, case 4).

    On the old code the config was accepted and table B's items were skipped as stale
    against table A's sequence numbers, then acknowledged.
    """
    # given a second table that names the first table's index
    raw = _example()
    other = copy.deepcopy(raw["tables"][0])
    other["name"] = "catalog-eu"
    raw["tables"].append(other)
    # when it is parsed
    # then both tables and the index are named
    with pytest.raises(ConfigError, match="'catalog' and 'catalog-eu' both name index 'catalog'"):
        parse_config(raw, environ={})


def test_index_that_is_not_an_alias_name_is_refused() -> None:
    """An index with upper case letters is refused, since OpenSearch would reject it."""
    # given an index name with capitals
    raw = _example()
    raw["tables"][0]["index"] = "Catalog"
    # when it is parsed
    # then the index is named
    with pytest.raises(ConfigError, match=r"tables\[0\]\.index 'Catalog'"):
        parse_config(raw, environ={})


def test_positional_cache_key_placeholder_is_refused() -> None:
    """A cache key template with an unnamed '{}' placeholder is refused."""
    # given a template with a positional placeholder
    raw = _example()
    raw["tables"][0]["cache_keys"] = ["product:{}"]
    # when it is parsed
    # then the template is named
    with pytest.raises(ConfigError, match="needs named placeholders"):
        parse_config(raw, environ={})


@pytest.mark.parametrize(
    ("section", "url", "key"),
    [
        ("opensearch", "127.0.0.1:9200", "opensearch.url"),
        ("opensearch", "redis://127.0.0.1:9200", "opensearch.url"),
        ("opensearch", "http://", "opensearch.url"),
        ("redis", "http://127.0.0.1:6379", "redis.url"),
        ("redis", "localhost", "redis.url"),
    ],
)
def test_bad_url_is_refused(section: str, url: str, key: str) -> None:
    """A URL without a supported scheme or a host is refused, naming the setting."""
    # given the example with a bad URL
    raw = _example()
    raw[section]["url"] = url
    # when it is parsed
    # then the error names the setting
    with pytest.raises(ConfigError, match=rf"{key} is not a valid URL"):
        parse_config(raw, environ={})


def test_bad_url_from_the_environment_is_refused() -> None:
    """A bad OPENSEARCH_URL is refused like a bad URL in the file."""
    # given a malformed URL in the environment
    # when the example is parsed
    # then it is refused
    with pytest.raises(ConfigError, match=r"opensearch\.url is not a valid URL"):
        parse_config(_example(), environ={"OPENSEARCH_URL": "search:9200"})


def test_bad_url_error_does_not_echo_credentials() -> None:
    """The error for a bad URL does not repeat a password the URL holds."""
    # given a redis URL with a password and a wrong scheme
    raw = _example()
    raw["redis"]["url"] = "http://user:s3cret@cache:6379"
    # when it is parsed
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})
    # then the password is not in the message
    assert "s3cret" not in str(caught.value)


def test_wrong_value_type_is_refused() -> None:
    """A setting of the wrong type is refused, naming it and the expected type."""
    # given a number given as text
    raw = _example()
    raw["opensearch"]["bulk_max_actions"] = "5000"
    # when it is parsed
    # then the setting and type are named
    with pytest.raises(ConfigError, match=r"opensearch\.bulk_max_actions must be a int"):
        parse_config(raw, environ={})


def test_sqs_queue_wins_over_file() -> None:
    """With both sqs_queue_url and file set, dead letters go to SQS only."""
    # given a dead-letter section with both destinations
    raw = _example()
    raw["deadletter"]["sqs_queue_url"] = (
        "https://sqs.us-east-1.amazonaws.com/123456789012/syncer-dlq"
    )
    # when it is parsed
    config = parse_config(raw, environ={})
    # then SQS is the only destination
    assert config.deadletter == DeadLetterConfig(
        file=None, sqs_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/syncer-dlq"
    )


def test_deadletter_without_a_destination_is_refused() -> None:
    """A dead-letter section with an empty file and no queue is refused."""
    # given an empty dead-letter file and no queue
    raw = _example()
    raw["deadletter"]["file"] = ""
    # when it is parsed
    # then it asks for a destination
    with pytest.raises(ConfigError, match=r"\[deadletter\] needs file or sqs_queue_url"):
        parse_config(raw, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A configuration path that does not exist gives a ConfigError naming the path."""
    # given a path with no file
    path = tmp_path / "nope.toml"
    # when it is loaded
    # then the error names the path and how to set another
    with pytest.raises(ConfigError, match=r"nope\.toml not found"):
        load_config(str(path), environ={})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not TOML gives a ConfigError, not a parser traceback."""
    # given a broken TOML file
    path = tmp_path / "broken.toml"
    path.write_text("[opensearch\nurl = ")
    # when it is loaded
    # then it is a ConfigError
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(path), environ={})


def test_syncer_config_variable_names_the_file(tmp_path: Path) -> None:
    """SYNCER_CONFIG selects the file when no explicit path is given."""
    # given a config file named by SYNCER_CONFIG
    path = tmp_path / "other.toml"
    path.write_text('[[tables]]\nname = "orders"\nindex = "orders"\n')
    # when it is loaded without an explicit path
    config = load_config(None, environ={"SYNCER_CONFIG": str(path)})
    # then that file was read
    assert [t.name for t in config.tables] == ["orders"]


@pytest.mark.parametrize("section", ["opensearch", "redis"])
def test_section_that_is_not_a_table_is_a_config_error(section: str) -> None:
    """A section written as a plain value (opensearch = "http://...") is a ConfigError."""
    # given a section given as a string instead of a table
    raw = _example()
    raw[section] = "http://127.0.0.1:9200"
    # when it is parsed
    # then it is a ConfigError naming the section
    with pytest.raises(ConfigError, match=section):
        parse_config(raw, environ={})


def test_boolean_for_a_number_setting_is_refused() -> None:
    """A boolean where a number is expected is refused rather than read as 1."""
    # given bulk_max_actions = true
    raw = _example()
    raw["opensearch"]["bulk_max_actions"] = True
    # when it is parsed
    # then it is refused
    with pytest.raises(ConfigError, match=r"opensearch\.bulk_max_actions"):
        parse_config(raw, environ={})


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (True, True), (False, False)])
def test_redis_cluster_takes_auto_true_or_false(value: object, expected: object) -> None:
    """``[redis] cluster`` accepts "auto" (the default), true and false."""
    raw = _example()
    raw["redis"]["cluster"] = value
    assert parse_config(raw, environ={}).redis.cluster == expected


@pytest.mark.parametrize("value", ["yes", "cluster", 1])
def test_redis_cluster_with_another_value_is_refused(value: object) -> None:
    """Any other ``[redis] cluster`` value is refused, naming the key."""
    raw = _example()
    raw["redis"]["cluster"] = value
    with pytest.raises(ConfigError, match=r"redis\.cluster"):
        parse_config(raw, environ={})


def test_redis_cluster_with_a_database_other_than_0_is_refused() -> None:
    """A Redis Cluster has only database 0, so ``cluster = true`` with ``/2`` is a config error."""
    raw = _example()
    raw["redis"]["cluster"] = True
    raw["redis"]["url"] = "redis://cache:6379/2"
    with pytest.raises(ConfigError, match="database 2"):
        parse_config(raw, environ={})


def test_redis_wait_replicas_below_zero_is_refused() -> None:
    """``wait_replicas`` counts replicas, so a negative number is a config error."""
    raw = _example()
    raw["redis"]["wait_replicas"] = -1
    with pytest.raises(ConfigError, match=r"redis\.wait_replicas"):
        parse_config(raw, environ={})


def test_redis_cluster_with_a_database_in_the_query_is_refused() -> None:
    """``?db=2`` selects a database as the path does (redis-py reads both), so it is refused too."""
    raw = _example()
    raw["redis"]["cluster"] = True
    raw["redis"]["url"] = "redis://cache:6379?db=2"
    with pytest.raises(ConfigError, match="database 2"):
        parse_config(raw, environ={})
