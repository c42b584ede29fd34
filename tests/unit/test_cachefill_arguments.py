"""The async cache and the protocol's public helpers check their arguments before any I/O."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis.asyncio

from syncer.client.cachefill import (
    AsyncLeasedCache,
    decode_entry,
    marker,
    new_token,
    next_wait_s,
    read_result,
)


class NoCommands(redis.asyncio.Redis):
    """An asyncio client whose every command is a test failure."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        raise AssertionError(f"a Redis command was sent: {args[:1]}")


async def _load() -> bytes:
    raise AssertionError("the loader must not run")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.get_or_fill(42, _load), TypeError, "key must be a str"),
        (lambda c: c.get_or_fill("", _load), ValueError, "key must not be empty"),
        (lambda c: c.get_or_fill("k", None), TypeError, "loader must be callable"),
        (lambda c: c.get_or_fill("k", _load, ttl_s=-1), ValueError, "ttl_s"),
        (lambda c: c.get_or_fill("k", _load, ttl_s=None), TypeError, "ttl_s"),
        (lambda c: c.get(["k"]), TypeError, "key must be a str"),
        (lambda c: c.fill("k", "forged", b"v"), ValueError, "not a lease token"),
        (lambda c: c.fill("k", None, b"v"), TypeError, "token must be the str"),
        (lambda c: c.release("k", 7), TypeError, "token must be the str"),
    ],
)
def test_async_cache_arguments_are_refused_before_any_command(
    call: Any, error: type[Exception], message: str
) -> None:
    """AsyncLeasedCache names the bad argument and sends nothing."""

    async def scenario() -> None:
        client = NoCommands()
        try:
            with pytest.raises(error, match=message):
                await call(AsyncLeasedCache(client))
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_the_protocol_helpers_name_their_bad_arguments() -> None:
    """decode_entry, new_token, marker, read_result and next_wait_s refuse wrong types clearly."""
    with pytest.raises(TypeError, match="decode_responses=True returns str"):
        decode_entry("product")  # type: ignore[arg-type]
    assert decode_entry(bytearray(b"v")) is not None
    with pytest.raises(TypeError, match="granted_at_ms must be an int"):
        new_token(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="token must be the str"):
        marker(b"t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ASCII"):
        marker("tökén")
    with pytest.raises(TypeError, match="token must be a str"):
        read_result(None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step must be an int"):
        next_wait_s(-1, 1.0, random.Random())
    with pytest.raises(ValueError, match="remaining_s"):
        next_wait_s(0, float("nan"), random.Random())
    with pytest.raises(TypeError, match="rng must be"):
        next_wait_s(0, 1.0, None)  # type: ignore[arg-type]
