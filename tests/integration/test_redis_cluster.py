"""syncer on a real Redis Cluster (scripts/services.sh): every slot range, MOVED and ASK, a
primary killed during delivery, ACL users with a wrong password, and TLS with a private CA.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from syncer import handler
from syncer.config import RedisConfig
from syncer.obs.logs import JsonFormatter
from syncer.sinks.cache import invalidate, key_slot, make_client
from tests.integration.conftest import (
    REDIS_CLUSTER_CA,
    REDIS_CLUSTER_TLS_URL,
    REDIS_CLUSTER_URL,
    REDIS_URL,
    REPO_ROOT,
    SERVICES_DIR,
    Stack,
    write_config,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("redis_url", [REDIS_CLUSTER_URL]),
]

ACL_PASSWORD = "Cluster-S3cretPass"
WRONG_PASSWORD = "Cluster-WrongPass-Q7"


def _item(pk: str, category: str = "shoes") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": category}}


def _failed(response: dict[str, Any]) -> set[str]:
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


def _sequence_numbers(records: list[dict[str, Any]]) -> set[str]:
    return {record["dynamodb"]["SequenceNumber"] for record in records}


def _cache_keys(pk: str, category: str) -> set[str]:
    """The keys write_config's templates give an item (product, product+sk, category)."""
    return {f"product:{pk}", f"product:{pk}:v1", f"category:{category}"}


def _admin() -> RedisCluster:
    """A plain redis-py cluster client (default retries), to seed and inspect keys; it knows
    every node, so it finds the cluster while a killed seed node is down."""
    nodes = [ClusterNode("127.0.0.1", port) for port in _cluster_ports()]
    return RedisCluster(startup_nodes=nodes)


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port)


def _keys_by_primary(admin: RedisCluster, keys: set[str]) -> dict[str, int]:
    """How many of ``keys`` each primary serves, by the cluster's own slot map."""
    counts = {node.name: 0 for node in admin.get_primaries()}
    for key in keys:
        counts[admin.get_node_from_key(key).name] += 1
    return counts


def _cluster_ports() -> list[int]:
    return [int(port) for port in os.environ.get("REDIS_CLUSTER_PORTS", "").split()] or list(
        range(7000, 7006)
    )


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured line, as the text handler and as syncer's JSON formatter write it."""
    return caplog.text + "\n".join(JsonFormatter().format(record) for record in caplog.records)


def _repoint(stack: Stack, redis_section: str) -> None:
    write_config(stack.config_path, stack.table, stack.index, redis=redis_section)
    handler.reset_container()


# --- every slot range, hash tags, MOVED and ASK ---------------------------------------------------


def test_a_batch_touching_every_slot_range_is_invalidated_completely(stack: Stack) -> None:
    """One batch whose cache keys fall in every primary's slot ranges leaves none of them."""
    # given 200 items whose keys cover every slot range of the cluster, all cached, and others
    admin = _admin()
    run = uuid.uuid4().hex[:6]
    items = {f"every-{run}-{n}": f"cat-{run}-{n % 7}" for n in range(200)}
    keys = set().union(*(_cache_keys(pk, category) for pk, category in items.items()))
    per_primary = _keys_by_primary(admin, keys)
    assert len(per_primary) == 3
    assert min(per_primary.values()) > 50, per_primary
    for key in keys:
        admin.set(key, "stale")
    unrelated = [f"unrelated-{run}-{n}" for n in range(30)]
    for key in unrelated:
        admin.set(key, "keep")
    for pk, category in items.items():
        stack.put(_item(pk, category))
    # when the whole stream is delivered as one batch
    (response,) = stack.deliver(batch_size=1000)
    # then every record is acknowledged, no key is left, and other keys are untouched
    assert response == {"batchItemFailures": []}
    assert [k for k in sorted(keys) if admin.exists(k)] == []
    assert all(admin.get(key) == b"keep" for key in unrelated)
    admin.delete(*unrelated)


def test_keys_with_a_hash_tag_are_invalidated_where_redis_put_them(redis_url: str) -> None:
    """Keys sharing a hash tag live on one node and are unlinked there, with untagged ones."""
    admin = _admin()
    tag = uuid.uuid4().hex[:8]
    tagged = [f"{{{tag}}}:product:{n}" for n in range(20)]
    untagged = [f"plain-{tag}-{n}" for n in range(20)]
    for key in tagged + untagged:
        admin.set(key, "stale")
    assert {admin.keyslot(key) for key in tagged} == {key_slot(tag)}
    cache = make_client(RedisConfig(url=redis_url))
    try:
        assert invalidate(cache, tagged + untagged) == 40
    finally:
        cache.close()
    assert [k for k in tagged + untagged if admin.exists(k)] == []


def test_a_stale_slot_map_is_corrected_by_following_moved(redis_url: str) -> None:
    """A slot the client maps to the wrong primary answers MOVED; the keys are still unlinked."""
    admin = _admin()
    key = f"moved-{uuid.uuid4().hex}"
    admin.set(key, "stale")
    cache = make_client(RedisConfig(url=redis_url))
    try:
        client = cache.connected()
        slot = key_slot(key)
        owner = client.nodes_manager.get_node_from_slot(slot)
        wrong = next(node for node in client.get_primaries() if node.name != owner.name)
        client.nodes_manager.slots_cache[slot] = [wrong]  # as if the slot moved since
        assert invalidate(cache, [key]) == 1
        assert client.nodes_manager.get_node_from_slot(slot).name == owner.name
    finally:
        cache.close()
    assert admin.exists(key) == 0


@pytest.fixture
def migrating_slot() -> Iterator[tuple[str, redis.Redis, redis.Redis]]:
    """A hash tag whose slot is being migrated from its primary to another (MIGRATING and
    IMPORTING, as ``redis-cli --cluster reshard`` sets them): ``{tag}:not-moved-yet`` is still
    on the source, ``{tag}:moved-already`` on the target. Made stable afterwards."""
    admin = _admin()
    tag = f"ask-{uuid.uuid4().hex[:8]}"
    slot = key_slot(tag)
    owner = admin.nodes_manager.get_node_from_slot(slot)
    other = next(node for node in admin.get_primaries() if node.name != owner.name)
    source, target = _node(owner.port), _node(other.port)
    source.set(f"{{{tag}}}:not-moved-yet", "stale")
    source_id = source.execute_command("CLUSTER MYID").decode()
    target_id = target.execute_command("CLUSTER MYID").decode()
    target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    try:
        _asking(target, "SET", f"{{{tag}}}:moved-already", "stale")
        yield tag, source, target
    finally:
        # a key the test left behind would answer ASK: delete without raising on it
        _asking(target, "DEL", f"{{{tag}}}:moved-already")
        source.pipeline(transaction=False).delete(f"{{{tag}}}:not-moved-yet").execute(False)
        for node in (target, source):
            node.execute_command("CLUSTER SETSLOT", slot, "STABLE")
            node.close()


def _asking(node: redis.Redis, *command: str) -> Any:
    """``command`` on an importing node, which serves it only right after ASKING."""
    pipe = node.pipeline(transaction=False)
    pipe.execute_command("ASKING")
    pipe.execute_command(*command)
    return pipe.execute()[1]


def test_keys_of_a_migrating_slot_are_followed_with_ask(
    redis_url: str, migrating_slot: tuple[str, redis.Redis, redis.Redis]
) -> None:
    """During a slot migration a key already moved is unlinked on the importing node (ASK),
    and a pair split between both nodes (TRYAGAIN) is unlinked key by key."""
    # given a key still on the migrating node and one already on the importing node
    tag, source, target = migrating_slot
    not_moved, moved = f"{{{tag}}}:not-moved-yet", f"{{{tag}}}:moved-already"
    # when both are invalidated together
    cache = make_client(RedisConfig(url=redis_url))
    try:
        removed = invalidate(cache, [not_moved, moved])
    finally:
        cache.close()
    # then both are gone, each on its node
    assert removed == 2
    # (a migrating node answers ASK for a key it no longer holds)
    on_source = source.pipeline(transaction=False).exists(not_moved).execute(False)
    assert isinstance(on_source[0], redis.exceptions.AskError)
    assert _asking(target, "EXISTS", not_moved) == _asking(target, "EXISTS", moved) == 0


# --- a primary dies during delivery -------------------------------------------------------------


def _pid(port: int) -> int:
    return int((SERVICES_DIR / "redis-cluster" / str(port) / "redis.pid").read_text().strip())


def _wait_replicas_in_sync(primary: redis.Redis, timeout_s: float = 10.0) -> None:
    """Until the primary's replicas have applied everything it acknowledged so far."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = primary.info("replication")
        offset = info["master_repl_offset"]
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        if replicas and all(int(r["offset"]) >= offset for r in replicas):
            return
        time.sleep(0.05)
    raise AssertionError("the replica did not catch up")


@pytest.fixture
def restore_cluster() -> Iterator[None]:
    """After a test that kills nodes: restart them (they rejoin as replicas), wait until the
    cluster again has every node, 3 primaries and replicas in sync."""
    yield
    subprocess.run(
        [str(REPO_ROOT / "scripts" / "services.sh"), "cluster-up"],
        check=True,
        capture_output=True,
        timeout=180,
    )


def _deliver_like_lambda(
    stack: Stack, batch: list[dict[str, Any]], deadline_s: float
) -> list[set[str]]:
    """Invoke until no record is reported, retrying from the lowest reported one as Lambda
    does; the reported sets of each attempt. After every response, the cache keys of every
    record it acknowledged must already be gone."""
    reported_per_attempt: list[set[str]] = []
    pending = batch
    deadline = time.monotonic() + deadline_s
    while pending:
        assert time.monotonic() < deadline, f"still failing: {reported_per_attempt[-3:]}"
        response = stack.invoke(pending)
        reported = _failed(response)
        reported_per_attempt.append(reported)
        acknowledged = [r for r in pending if r["dynamodb"]["SequenceNumber"] not in reported]
        _assert_invalidated(acknowledged)
        lowest = min((int(s) for s in reported), default=None)
        pending = [
            r
            for r in pending
            if lowest is not None and int(r["dynamodb"]["SequenceNumber"]) >= lowest
        ]
        if pending:
            time.sleep(0.2)
    return reported_per_attempt


def _assert_invalidated(records: list[dict[str, Any]]) -> None:
    keys: set[str] = set()
    for record in records:
        image = record["dynamodb"].get("NewImage") or record["dynamodb"]["OldImage"]
        keys |= _cache_keys(image["pk"]["S"], image["category"]["S"])
    if keys:
        admin = _admin()  # a fresh slot map: the one after any failover
        assert [k for k in sorted(keys) if admin.exists(k)] == [], "acknowledged but cached"
        admin.close()


def test_a_primary_killed_during_delivery_fails_over_and_nothing_is_acknowledged_early(
    stack: Stack, restore_cluster: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A primary dies between batches: the batches touching it are reported (naming the node)
    until its replica is promoted, then complete; no key is left stale."""
    caplog.set_level(logging.WARNING)
    # given 60 cached items delivered in batches of 10, the first batch already done
    admin = _admin()
    run = uuid.uuid4().hex[:6]
    items = {f"fo-{run}-{n}": f"focat-{run}-{n % 5}" for n in range(60)}
    for pk, category in items.items():
        for key in _cache_keys(pk, category):
            admin.set(key, "stale")
        stack.put(_item(pk, category))
    records = stack.new_records()
    batches = [records[start : start + 10] for start in range(0, len(records), 10)]
    assert _deliver_like_lambda(stack, batches[0], 10) == [set()]
    # when the primary serving the next batch's first key is killed (its replica in sync)
    first_pk = batches[1][0]["dynamodb"]["NewImage"]["pk"]["S"]
    victim = admin.nodes_manager.get_node_from_slot(key_slot(f"product:{first_pk}"))
    _wait_replicas_in_sync(_node(victim.port))
    os.kill(_pid(victim.port), signal.SIGKILL)
    # then delivery goes on: the next batch is reported until the replica takes over
    attempts = _deliver_like_lambda(stack, batches[1], 60)
    assert attempts[0] == _sequence_numbers(batches[1]), "acknowledged while its primary was dead"
    assert attempts[-1] == set()
    for batch in batches[2:]:
        _deliver_like_lambda(stack, batch, 60)
    # and nothing is stale, the index follows the table, and the logs named the dead node
    all_keys = set().union(*(_cache_keys(pk, category) for pk, category in items.items()))
    fresh = _admin()
    assert [k for k in sorted(all_keys) if fresh.exists(k)] == []
    assert victim.name not in {node.name for node in fresh.get_primaries()}
    assert stack.indexed() == stack.scanned()
    assert victim.name in caplog.text


def test_a_paused_primary_times_out_naming_the_node_and_a_later_delivery_completes(
    stack: Stack, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A primary that stops answering (CLIENT PAUSE) fails the batch as transient, naming the
    node; its half-read connection is dropped, and the next delivery completes."""
    caplog.set_level(logging.WARNING)
    # given cached items, and syncer with a 0.3 s Redis timeout
    admin = _admin()
    run = uuid.uuid4().hex[:6]
    pks = [f"pause-{run}-{n}" for n in range(20)]
    for pk in pks:
        admin.set(f"product:{pk}", "stale")
        stack.put(_item(pk))
    records = stack.new_records()
    _repoint(stack, f'[redis]\nurl = "{redis_url}"\ntimeout_s = 0.3\n')
    assert stack.invoke(records[:1]) == {"batchItemFailures": []}  # connected, slot map read
    # when the primary of one of the keys pauses every client for 3 s
    paused = admin.get_node_from_key(f"product:{pks[1]}")
    _node(paused.port).execute_command("CLIENT PAUSE", 3000, "ALL")
    response = stack.invoke(records[1:])
    # then the batch is reported, as transient, naming the paused node
    assert _failed(response) == _sequence_numbers(records[1:])
    assert f"Redis invalidation failed (transient): Redis node {paused.name}" in caplog.text
    # and once it answers again the same records are delivered and nothing stays cached
    time.sleep(3.2)
    assert stack.invoke(records[1:]) == {"batchItemFailures": []}
    assert [pk for pk in pks if admin.exists(f"product:{pk}")] == []


def test_with_wait_replicas_nothing_is_acknowledged_before_a_replica_has_it(
    stack: Stack, redis_url: str, restore_cluster: None, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``wait_replicas = 1`` a batch whose primary's replica is stopped is reported
    (the primary alone answered); with the replica back the same batch completes."""
    caplog.set_level(logging.WARNING)
    # given cached items and syncer waiting for one replica per primary
    admin = _admin()
    run = uuid.uuid4().hex[:6]
    pks = [f"wait-{run}-{n}" for n in range(20)]
    for pk in pks:
        admin.set(f"product:{pk}", "stale")
        stack.put(_item(pk))
    records = stack.new_records()
    _repoint(stack, f'[redis]\nurl = "{redis_url}"\ntimeout_s = 0.4\nwait_replicas = 1\n')
    assert stack.invoke(records[:1]) == {"batchItemFailures": []}
    # when the replica of the primary serving one of the keys stops (SIGSTOP) for a moment
    primary, replica = admin.nodes_manager.slots_cache[key_slot(f"product:{pks[1]}")][:2]
    os.kill(_pid(replica.port), signal.SIGSTOP)
    try:
        response = stack.invoke(records[1:])
    finally:
        os.kill(_pid(replica.port), signal.SIGCONT)
    # then the batch is reported, naming the primary whose replica did not confirm
    assert _failed(response) == _sequence_numbers(records[1:])
    assert f"Redis node {primary.name}: 0 of 1 replica(s) confirmed" in caplog.text
    # and with the replica back, delivering it again acknowledges it with nothing cached
    _wait_replicas_in_sync(_node(primary.port))
    assert stack.invoke(records[1:]) == {"batchItemFailures": []}
    assert [pk for pk in pks if admin.exists(f"product:{pk}")] == []


# --- credentials and TLS ----------------------------------------------------------------------


@pytest.fixture
def cluster_acl_user() -> Iterator[str]:
    """An ACL user with every permission on every node (a cluster does not share ACLs)."""
    name = f"syncer-cluster-{uuid.uuid4().hex[:8]}"
    nodes = [_node(port) for port in _cluster_ports()]
    for node in nodes:
        node.acl_setuser(
            name,
            enabled=True,
            passwords=[f"+{ACL_PASSWORD}"],
            keys=["*"],
            channels=["*"],
            categories=["+@all"],
        )
    yield name
    for node in nodes:
        node.acl_deluser(name)
        node.close()


@pytest.mark.parametrize("cluster_setting", ['"auto"', "true"])
def test_a_wrong_password_fails_the_batch_and_is_never_logged(
    stack: Stack,
    cluster_acl_user: str,
    cluster_setting: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An ACL user with a wrong password: every record reported as fatal, the key still
    cached, and neither password in any log line."""
    caplog.set_level(logging.DEBUG)
    admin = _admin()
    pk = f"acl-{uuid.uuid4().hex[:8]}"
    admin.set(f"product:{pk}", "stale")
    stack.put(_item(pk))
    records = stack.new_records()
    monkeypatch.setenv("SYNCER_TEST_REDIS_PASSWORD", WRONG_PASSWORD)
    _repoint(
        stack,
        f'[redis]\nurl = "{REDIS_CLUSTER_URL}"\nusername = "{cluster_acl_user}"\n'
        f'password = {{ env = "SYNCER_TEST_REDIS_PASSWORD" }}\ncluster = {cluster_setting}\n',
    )
    response = stack.invoke(records)
    assert _failed(response) == _sequence_numbers(records)
    assert admin.get(f"product:{pk}") == b"stale"
    admin.delete(f"product:{pk}")
    logged = _logged(caplog)
    assert "Redis invalidation failed (fatal)" in logged
    assert WRONG_PASSWORD not in logged
    assert ACL_PASSWORD not in logged


def test_the_right_password_of_an_acl_user_works_on_every_node(
    stack: Stack, cluster_acl_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same ACL user with its password invalidates keys on every primary."""
    admin = _admin()
    run = uuid.uuid4().hex[:6]
    pks = [f"acl-ok-{run}-{n}" for n in range(30)]
    for pk in pks:
        admin.set(f"product:{pk}", "stale")
        stack.put(_item(pk))
    monkeypatch.setenv("SYNCER_TEST_REDIS_PASSWORD", ACL_PASSWORD)
    _repoint(
        stack,
        f'[redis]\nurl = "{REDIS_CLUSTER_URL}"\nusername = "{cluster_acl_user}"\n'
        'password = { env = "SYNCER_TEST_REDIS_PASSWORD" }\n',
    )
    assert stack.deliver() == [{"batchItemFailures": []}]
    assert [pk for pk in pks if admin.exists(f"product:{pk}")] == []


def _tls_admin() -> RedisCluster:
    return RedisCluster.from_url(REDIS_CLUSTER_TLS_URL, ssl_ca_certs=str(REDIS_CLUSTER_CA))


def test_rediss_against_a_tls_cluster_works_with_the_configured_ca(stack: Stack) -> None:
    """rediss:// to a TLS cluster whose certificate a private CA signed, with ca_certs set."""
    assert Path(REDIS_CLUSTER_CA).exists(), "scripts/services.sh cluster-up makes the TLS cluster"
    admin = _tls_admin()
    run = uuid.uuid4().hex[:6]
    pks = [f"tls-{run}-{n}" for n in range(30)]
    for pk in pks:
        admin.set(f"product:{pk}", "stale")
        stack.put(_item(pk))
    _repoint(stack, f'[redis]\nurl = "{REDIS_CLUSTER_TLS_URL}"\nca_certs = "{REDIS_CLUSTER_CA}"\n')
    assert stack.deliver() == [{"batchItemFailures": []}]
    assert [pk for pk in pks if admin.exists(f"product:{pk}")] == []
    assert handler._get_container().sinks.redis.is_cluster


def test_rediss_without_the_ca_is_refused(stack: Stack) -> None:
    """Without ca_certs the private CA is not trusted: the records are reported, keys stay."""
    admin = _tls_admin()
    pk = f"tls-untrusted-{uuid.uuid4().hex[:6]}"
    admin.set(f"product:{pk}", "stale")
    stack.put(_item(pk))
    _repoint(stack, f'[redis]\nurl = "{REDIS_CLUSTER_TLS_URL}"\n')
    records = stack.new_records()
    assert _failed(stack.invoke(records)) == _sequence_numbers(records)
    assert admin.get(f"product:{pk}") == b"stale"
    admin.delete(f"product:{pk}")


# --- cluster = "auto" with a database other than 0 ------------------------------------------------


def _on_database(url: str, database: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}" if url.count("/") > 2 else f"{url}/{database}"


def test_auto_detection_refuses_a_database_other_than_0_as_a_config_error(redis_url: str) -> None:
    """``cluster = "auto"`` with ``/3`` on a cluster: the first use raises the ConfigError that
    explains it (fatal, never retried), not redis's "SELECT is not allowed in cluster mode",
    and later uses give the same error without connecting again."""
    from syncer.errors import ConfigError
    from syncer.sinks.resilience import ErrorKind, classify

    # given a handle to the cluster whose URL selects database 3, with detection left to "auto"
    cache = make_client(RedisConfig(url=_on_database(redis_url, 3)))
    try:
        # when it is used the first time
        with pytest.raises(ConfigError) as first:
            invalidate(cache, {f"db3-{uuid.uuid4().hex[:8]}"})
        # then the message is the configuration's, and the error is fatal
        message = str(first.value)
        assert "redis.url selects database 3" in message
        assert "Redis Cluster has only database 0" in message
        assert "SELECT" not in message
        assert classify(first.value) is ErrorKind.FATAL
        # and a second use refuses the same way without a client being built
        with pytest.raises(ConfigError, match="database 3"):
            invalidate(cache, {"another"})
        assert not cache.is_connected
    finally:
        cache.close()


def test_a_single_node_keeps_its_database_with_auto_detection(redis_url: str) -> None:
    """On a single node (not the module's cluster), ``cluster = "auto"`` with ``/3`` still
    writes to database 3: detection itself selects no database."""
    del redis_url  # the module's parameter: this test is about the single node
    # given a key in database 3 of the single node, and the same key in database 0
    key = f"db3-single-{uuid.uuid4().hex[:8]}"
    db3 = redis.Redis.from_url(_on_database(REDIS_URL, 3))
    db0 = redis.Redis.from_url(_on_database(REDIS_URL, 0))
    db3.set(key, "stale")
    db0.set(key, "other")
    cache = make_client(RedisConfig(url=_on_database(REDIS_URL, 3)))
    try:
        # when the key is invalidated through syncer's client
        assert invalidate(cache, {key}) == 1
    finally:
        cache.close()
    # then only database 3's copy is gone
    assert db3.exists(key) == 0
    assert db0.get(key) == b"other"
    db0.delete(key)


def test_a_batch_with_a_database_on_a_cluster_is_reported_with_the_clear_message(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the handler: every record reported, the key still cached, and the log line says
    the cluster has only database 0 (not SELECT is not allowed)."""
    caplog.set_level(logging.INFO)
    admin = _admin()
    pk = f"db3-{uuid.uuid4().hex[:8]}"
    admin.set(f"product:{pk}", "stale")
    stack.put(_item(pk))
    records = stack.new_records()
    _repoint(stack, f'[redis]\nurl = "{_on_database(REDIS_CLUSTER_URL, 3)}"\n')
    response = stack.invoke(records)
    assert _failed(response) == _sequence_numbers(records)
    assert admin.get(f"product:{pk}") == b"stale"
    admin.delete(f"product:{pk}")
    logged = _logged(caplog)
    assert "Redis invalidation failed (fatal): redis.url selects database 3" in logged
    assert "SELECT is not allowed" not in logged
