"""Credentials and transport security on the real services: secrets stay out of every log line
and response, basic auth and SigV4 reach OpenSearch, TLS is verified against the configured CA,
Redis ACL users work over TLS, passwords come from Secrets Manager and SSM, and a bad
configuration is refused at start with the key named.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from click.testing import CliRunner

from syncer import handler
from syncer.cli import main
from syncer.config import load_config
from syncer.obs.logs import JsonFormatter, TextFormatter
from syncer.sinks.build import aws_client, build_sinks
from tests.integration.conftest import (
    LIBRARY_LOGGERS,
    OPENSEARCH_URL,
    REDIS_URL,
    Stack,
    free_port,
    write_config,
)
from tests.integration.faults import OpenSearchFaultProxy
from tests.integration.tls import TlsFiles, TlsTerminatingProxy, make_tls_files, tls_proxy

pytestmark = pytest.mark.integration

URL_SECRET = "Hunter2Secret"
ACL_PASSWORD = "S3cretPass"
WRONG_PASSWORD = "WrongPass-Xyz9"


class HeaderRecordingProxy(OpenSearchFaultProxy):
    """An OpenSearch proxy that keeps the headers of every request it forwards."""

    def __init__(self, target_url: str) -> None:
        super().__init__(target_url)
        self.requests: list[dict[str, str]] = []
        self._recording = threading.Lock()

    def forward(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        with self._recording:
            self.requests.append({name.lower(): value for name, value in headers.items()})
        return super().forward(method, path, body, headers)

    def header_values(self, name: str) -> set[str]:
        with self._recording:
            return {request.get(name.lower(), "") for request in self.requests}


@dataclass
class CapturedLogs:
    """Everything logged during a test, once through each of syncer's formatters."""

    text: io.StringIO
    json: io.StringIO

    def everything(self) -> str:
        return self.text.getvalue() + self.json.getvalue()


def _item(pk: str, category: str = "shoes") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": category}}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _repoint(stack: Stack, opensearch: str | None = None, redis_section: str | None = None) -> None:
    """Rewrite the stack's config with new [opensearch]/[redis] sections and rebuild the handler."""
    sections = {}
    if opensearch is not None:
        sections["opensearch"] = f"[opensearch]\n{opensearch}\ntimeout_s = 5\n"
    if redis_section is not None:
        sections["redis"] = f"[redis]\n{redis_section}\ntimeout_s = 2\n"
    write_config(stack.config_path, stack.table, stack.index, **sections)
    handler.reset_container()


def _failed(response: dict[str, Any]) -> set[str]:
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


def _sequence_numbers(records: list[dict[str, Any]]) -> set[str]:
    return {record["dynamodb"]["SequenceNumber"] for record in records}


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@pytest.fixture
def captured_logs(root_logger: logging.Logger) -> CapturedLogs:
    """Root-logger output at INFO, client libraries included, as text and as JSON lines."""
    captured = CapturedLogs(io.StringIO(), io.StringIO())
    for stream, formatter in (
        (captured.text, TextFormatter()),
        (captured.json, JsonFormatter()),
    ):
        stream_handler = logging.StreamHandler(stream)
        stream_handler.setFormatter(formatter)
        root_logger.addHandler(stream_handler)
    root_logger.setLevel(logging.INFO)
    for name in LIBRARY_LOGGERS:  # stricter than production, which silences them below ERROR
        logging.getLogger(name).setLevel(logging.NOTSET)
    return captured


@pytest.fixture
def recording_proxy() -> Iterator[HeaderRecordingProxy]:
    proxy = HeaderRecordingProxy(OPENSEARCH_URL)
    yield proxy
    proxy.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    directory = tmp_path / "tls"
    directory.mkdir()
    return make_tls_files(directory)


@pytest.fixture
def acl_user() -> Iterator[str]:
    """A Redis ACL user with password S3cretPass and every permission, deleted afterwards."""
    name = _unique("syncer-test")
    admin = redis.Redis.from_url(REDIS_URL)
    # ACL SETUSER <name> on >S3cretPass ~* &* +@all
    admin.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{ACL_PASSWORD}"],
        keys=["*"],
        channels=["*"],
        categories=["+@all"],
    )
    yield name
    admin.acl_deluser(name)
    admin.close()


@pytest.fixture
def direct_redis() -> Iterator[redis.Redis]:
    """A plain client of the real Redis, to seed and inspect cache keys."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator's static credentials, so the SigV4 credential scope is predictable."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


# --- secrets never leak -------------------------------------------------------------------


def test_passwords_in_urls_never_reach_logs_or_the_response(
    stack: Stack,
    captured_logs: CapturedLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With both downstreams unreachable at URLs carrying a password, nothing prints the password."""
    # given OpenSearch and Redis URLs with a password, at ports where nothing listens
    stack.put(_item(_unique("leak")))
    records = stack.new_records()
    _repoint(
        stack,
        opensearch=f'url = "http://admin:{URL_SECRET}@127.0.0.1:{free_port()}"',
        redis_section=f'url = "redis://:{URL_SECRET}@127.0.0.1:{free_port()}/0"',
    )
    # when the batch is delivered and fails
    response = stack.invoke(records)
    out, err = capsys.readouterr()
    # then every record is reported, the failure was logged, and the password is nowhere
    assert _failed(response) == _sequence_numbers(records)
    logged = captured_logs.everything()
    assert "OpenSearch write failed" in logged
    assert URL_SECRET not in logged
    assert URL_SECRET not in json.dumps(response)
    assert URL_SECRET not in out + err


# --- OpenSearch authentication ------------------------------------------------------------


def test_basic_auth_sends_the_password_from_the_environment(
    stack: Stack, recording_proxy: HeaderRecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auth = "basic" with password = {env = ...} sends that password on every request."""
    # given basic auth whose password is in an environment variable
    password = "Env-Password-7"
    monkeypatch.setenv("SYNCER_TEST_OS_PASSWORD", password)
    stack.put(_item("basic1"))
    _repoint(
        stack,
        opensearch=f'url = "{recording_proxy.url}"\nauth = "basic"\nusername = "syncer"\n'
        'password = {env = "SYNCER_TEST_OS_PASSWORD"}',
    )
    # when a batch is delivered through the recording proxy
    responses = stack.deliver()
    # then every request carried the Basic credentials, and the document was indexed
    expected = "Basic " + base64.b64encode(f"syncer:{password}".encode()).decode()
    assert recording_proxy.header_values("Authorization") == {expected}
    assert responses == [{"batchItemFailures": []}]
    assert "basic1|v1" in stack.indexed()


@pytest.mark.usefixtures("aws_credentials")
@pytest.mark.parametrize("service", ["es", "aoss"])
def test_sigv4_signs_every_request_for_the_configured_region_and_service(
    stack: Stack, recording_proxy: HeaderRecordingProxy, service: str
) -> None:
    """auth = "sigv4" signs each request with the credential scope of the region and service."""
    # given SigV4 for eu-west-1 and the service under test
    stack.put(_item(f"sig-{service}"))
    _repoint(
        stack,
        opensearch=f'url = "{recording_proxy.url}"\nauth = "sigv4"\n'
        f'aws_region = "eu-west-1"\naws_service = "{service}"',
    )
    # when a batch is delivered through the recording proxy
    responses = stack.deliver()
    # then every request is signed for eu-west-1 and the service, with date and payload hash
    scope = re.compile(
        rf"^AWS4-HMAC-SHA256 Credential=testing/\d{{8}}/eu-west-1/{service}/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$"
    )
    signatures = recording_proxy.header_values("Authorization")
    assert signatures
    assert all(scope.match(signature) for signature in signatures), signatures
    assert all(
        re.fullmatch(r"\d{8}T\d{6}Z", d) for d in recording_proxy.header_values("X-Amz-Date")
    )
    hashes = recording_proxy.header_values("X-Amz-Content-SHA256")
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), hashes
    assert responses == [{"batchItemFailures": []}]
    assert f"sig-{service}|v1" in stack.indexed()


# --- TLS ----------------------------------------------------------------------------------


def test_https_opensearch_is_verified_against_the_configured_ca(
    stack: Stack, tls_files: TlsFiles
) -> None:
    """With ca_certs naming the CA that signed the server certificate, indexing over TLS works."""
    stack.put(_item("tls1"))
    with tls_proxy(tls_files, *_host_port(OPENSEARCH_URL, 9200)) as proxy:
        # given OpenSearch behind TLS and the CA configured
        _repoint(
            stack,
            opensearch=f'url = "https://127.0.0.1:{proxy.port}"\nca_certs = "{tls_files.ca_pem}"',
        )
        # when a batch is delivered
        responses = stack.deliver()
    # then it was indexed
    assert responses == [{"batchItemFailures": []}]
    assert "tls1|v1" in stack.indexed()


def test_https_opensearch_with_an_untrusted_certificate_is_refused(
    stack: Stack, tls_files: TlsFiles
) -> None:
    """Without the CA configured, certificates are still verified and the records are reported."""
    stack.put(_item("tls2"))
    records = stack.new_records()
    with tls_proxy(tls_files, *_host_port(OPENSEARCH_URL, 9200)) as proxy:
        # given OpenSearch behind TLS with a certificate from an unknown CA, and no ca_certs
        _repoint(stack, opensearch=f'url = "https://127.0.0.1:{proxy.port}"')
        # when a batch is delivered
        response = stack.invoke(records)
        handshake_failures = proxy.handshake_failures
    # then the handshake was refused and nothing was acknowledged or indexed
    assert handshake_failures > 0
    assert _failed(response) == _sequence_numbers(records)
    assert stack.indexed() == {}


def _redis_over_tls(stack: Stack, proxy: TlsTerminatingProxy, user: str, ca_pem: Path) -> None:
    _repoint(
        stack,
        redis_section=f'url = "rediss://127.0.0.1:{proxy.port}/0"\nusername = "{user}"\n'
        f'password = {{env = "SYNCER_TEST_REDIS_PASSWORD"}}\nca_certs = "{ca_pem}"',
    )


def test_redis_over_tls_with_an_acl_user_invalidates_the_cache(
    stack: Stack,
    tls_files: TlsFiles,
    acl_user: str,
    direct_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rediss:// URL with an ACL user and the CA configured invalidates the item's keys."""
    # given a cached key of an item, and Redis behind TLS with an ACL user
    pk = _unique("rtls")
    direct_redis.set(f"product:{pk}", "stale")
    monkeypatch.setenv("SYNCER_TEST_REDIS_PASSWORD", ACL_PASSWORD)
    stack.put(_item(pk))
    with tls_proxy(tls_files, *_host_port(REDIS_URL, 6379)) as proxy:
        _redis_over_tls(stack, proxy, acl_user, tls_files.ca_pem)
        # when the change is delivered
        responses = stack.deliver()
    # then the batch succeeded and the cached key is gone
    assert responses == [{"batchItemFailures": []}]
    assert direct_redis.exists(f"product:{pk}") == 0


def test_redis_acl_user_with_a_wrong_password_reports_the_records(
    stack: Stack,
    tls_files: TlsFiles,
    acl_user: str,
    direct_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: CapturedLogs,
) -> None:
    """A wrong Redis password fails the invalidation, reports the records and is never logged."""
    # given a cached key, and the ACL user configured with the wrong password
    pk = _unique("rbad")
    direct_redis.set(f"product:{pk}", "stale")
    monkeypatch.setenv("SYNCER_TEST_REDIS_PASSWORD", WRONG_PASSWORD)
    stack.put(_item(pk))
    records = stack.new_records()
    with tls_proxy(tls_files, *_host_port(REDIS_URL, 6379)) as proxy:
        _redis_over_tls(stack, proxy, acl_user, tls_files.ca_pem)
        # when the change is delivered
        response = stack.invoke(records)
    # then the records are reported, the key is still cached, and no password was logged
    assert _failed(response) == _sequence_numbers(records)
    assert direct_redis.get(f"product:{pk}") == b"stale"
    direct_redis.delete(f"product:{pk}")
    logged = captured_logs.everything()
    assert "Redis invalidation failed" in logged
    assert WRONG_PASSWORD not in logged
    assert ACL_PASSWORD not in logged


# --- passwords from AWS -------------------------------------------------------------------


@pytest.fixture
def opensearch_secret() -> Iterator[str]:
    """A Secrets Manager secret holding {"username": ..., "password": "FromSecretsMgr1"}."""
    client = aws_client("secretsmanager")
    name = _unique("syncer/opensearch")
    client.create_secret(
        Name=name, SecretString=json.dumps({"username": "syncer", "password": "FromSecretsMgr1"})
    )
    yield name
    client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


@pytest.fixture
def redis_parameter() -> Iterator[str]:
    """An SSM SecureString parameter holding the ACL user's password."""
    client = aws_client("ssm")
    name = "/" + _unique("syncer/redis")
    client.put_parameter(Name=name, Value=ACL_PASSWORD, Type="SecureString")
    yield name
    client.delete_parameter(Name=name)


def test_opensearch_password_comes_from_secrets_manager(
    stack: Stack, recording_proxy: HeaderRecordingProxy, opensearch_secret: str
) -> None:
    """password = {secrets_manager = ...} takes the JSON secret's password field for basic auth."""
    # given basic auth whose password is a Secrets Manager secret
    stack.put(_item("sm1"))
    _repoint(
        stack,
        opensearch=f'url = "{recording_proxy.url}"\nauth = "basic"\nusername = "syncer"\n'
        f'password = {{secrets_manager = "{opensearch_secret}"}}',
    )
    # when a batch is delivered
    responses = stack.deliver()
    # then the requests carried that password
    expected = "Basic " + base64.b64encode(b"syncer:FromSecretsMgr1").decode()
    assert recording_proxy.header_values("Authorization") == {expected}
    assert responses == [{"batchItemFailures": []}]


def test_redis_password_comes_from_an_ssm_parameter(
    stack: Stack, acl_user: str, redis_parameter: str
) -> None:
    """password = {ssm_parameter = ...} resolves the SecureString and authenticates the ACL user."""
    # given a config whose Redis password is an SSM parameter
    _repoint(
        stack,
        redis_section=f'url = "{REDIS_URL}"\nusername = "{acl_user}"\n'
        f'password = {{ssm_parameter = "{redis_parameter}"}}',
    )
    # when the sinks are built from it
    sinks = build_sinks(load_config(str(stack.config_path)))
    # then Redis accepts the connection as that user
    assert sinks.redis.acl_whoami() == acl_user
    sinks.redis.close()


# --- configuration refused at start --------------------------------------------------------


@pytest.mark.usefixtures("root_logger")  # the CLI configures logging on the runner's streams
def test_setup_uses_the_configured_basic_auth(
    stack: Stack, recording_proxy: HeaderRecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncer setup` authenticates like the pipeline: basic auth with the resolved password."""
    # given a configuration with basic auth whose password is in the environment
    monkeypatch.setenv("SYNCER_TEST_OS_PASSWORD", "Setup-Password-3")
    _repoint(
        stack,
        opensearch=f'url = "{recording_proxy.url}"\nauth = "basic"\nusername = "syncer"\n'
        'password = {env = "SYNCER_TEST_OS_PASSWORD"}',
    )
    # when setup checks the index through the recording proxy
    result = CliRunner().invoke(main, ["setup", "--config", str(stack.config_path), "--dry-run"])
    # then it succeeded and every request carried the credentials
    assert result.exit_code == 0, result.output
    expected = "Basic " + base64.b64encode(b"syncer:Setup-Password-3").decode()
    assert recording_proxy.header_values("Authorization") == {expected}


TABLE = '[[tables]]\nname = "catalog"\nindex = "catalog"\n'


@pytest.mark.usefixtures("root_logger")  # the CLI configures logging on the runner's streams
@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[opensearch]\nurll = "x"\n\n' + TABLE, "opensearch.urll"),
        ('[opensearch]\nurl = "ftp://x"\n\n' + TABLE, "opensearch.url"),
        ('[[tables]]\nname = "catalog"\n', "tables[0].index"),
    ],
    ids=["unknown-key", "bad-url", "table-without-index"],
)
def test_setup_refuses_a_bad_configuration_naming_the_key(
    tmp_path: Path, text: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncer setup` exits non-zero with one clear Error line naming the offending key."""
    # given a configuration with one mistake (and no URL override from the environment)
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    # when setup runs with it
    result = CliRunner().invoke(main, ["setup", "--config", str(path)])
    # then it stops with one Error line that names the key, and no traceback
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert named in errors[0]
    assert "Traceback" not in result.output
