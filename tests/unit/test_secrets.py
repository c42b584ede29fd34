"""Passwords: where the configuration may take them from, how they are resolved, and that they
are masked from every piece of text syncer writes.
"""

from __future__ import annotations

import tomllib
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from syncer.config import OpenSearchConfig, RedisConfig, SecretRef, parse_config
from syncer.errors import ConfigError
from syncer.sinks.secrets import REDACTOR, Redactor, resolve_secret, url_password

TABLE = '[[tables]]\nname = "catalog"\nindex = "catalog"\n'


class FakeAws:
    """A stand-in for ``runtime.aws_client``: answers GetSecretValue and GetParameter."""

    def __init__(self, secret_string: str = "", parameter: str = "") -> None:
        self.secret_string = secret_string
        self.parameter = parameter
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, service: str) -> FakeAws.Client:
        return FakeAws.Client(self, service)

    class Client:
        def __init__(self, fake: FakeAws, service: str) -> None:
            self.fake = fake
            self.service = service

        def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
            self.fake.calls.append((self.service, "get_secret_value", kwargs))
            return {"SecretString": self.fake.secret_string}

        def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
            self.fake.calls.append((self.service, "get_parameter", kwargs))
            return {"Parameter": {"Name": kwargs["Name"], "Value": self.fake.parameter}}


class MissingAws:
    """An AWS client factory whose every secret and parameter does not exist."""

    def __call__(self, service: str) -> MissingAws:
        return self

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}},
            "GetSecretValue",
        )

    def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "ParameterNotFound", "Message": "not found"}}, "GetParameter"
        )


def _unused_aws(service: str) -> Any:
    raise AssertionError(f"no AWS call expected, got one to {service}")


def _unique_secret(prefix: str) -> str:
    """A secret nobody else registers, since REDACTOR is shared by the whole process."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _parse(text: str) -> Any:
    return parse_config(tomllib.loads(text + "\n" + TABLE), environ={})


# --- the redactor -------------------------------------------------------------------------


def test_redactor_masks_a_registered_secret_wherever_it_appears() -> None:
    """Once added, a secret is replaced by *** in any text, however often it occurs."""
    # given a redactor that knows one secret
    redactor = Redactor()
    redactor.add("Sup3rSecret")
    # when text containing it twice is redacted
    text = redactor("login with Sup3rSecret failed; retrying with Sup3rSecret")
    # then both occurrences are masked
    assert text == "login with *** failed; retrying with ***"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw-123@cache:6379/0", "redis://:***@cache:6379/0"),
        ("https://admin:Adm1n!@search.internal:9200", "https://admin:***@search.internal:9200"),
        ("rediss://syncer:p%40ss@cache:6380", "rediss://syncer:***@cache:6380"),
    ],
)
def test_redactor_masks_the_password_of_any_url_userinfo(url: str, masked: str) -> None:
    """A ``scheme://user:password@`` password is masked even when it was never registered."""
    # given a redactor that knows no secret
    redactor = Redactor()
    # when a message with a URL carrying a password is redacted
    text = redactor(f"cannot connect to {url}: refused")
    # then the password is masked and the user and host are kept
    assert text == f"cannot connect to {masked}: refused"


def test_redactor_leaves_urls_without_a_password_alone() -> None:
    """Text without secrets or userinfo passes through unchanged."""
    redactor = Redactor()
    text = "POST http://127.0.0.1:9200/_bulk and redis://cache:6379/0 at 12:30:01"
    assert redactor(text) == text


def test_redactor_ignores_secrets_too_short_to_mask_safely() -> None:
    """A one- or two-character secret is not masked, so ordinary words stay readable."""
    redactor = Redactor()
    redactor.add("a")
    assert redactor("a batch") == "a batch"


def test_url_password_is_decoded_for_registration() -> None:
    """The password of a URL is found percent-decoded, as clients will send it."""
    assert url_password("redis://user:p%40ss@cache:6379/0") == "p@ss"
    assert url_password("redis://cache:6379/0") is None


# --- resolving a SecretRef ----------------------------------------------------------------


def test_inline_value_is_returned_and_registered_for_redaction() -> None:
    """A ``value`` secret is used as is, and from then on REDACTOR masks it."""
    # given an inline secret
    secret = _unique_secret("inline")
    # when it is resolved
    value = resolve_secret(SecretRef(value=secret), "redis.password", {}, _unused_aws)
    # then it is returned and masked by the shared redactor
    assert value == secret
    assert REDACTOR(f"password {secret} rejected") == "password *** rejected"


def test_env_secret_is_read_from_the_given_environment() -> None:
    """An ``env`` secret is the value of that environment variable."""
    secret = _unique_secret("env")
    value = resolve_secret(
        SecretRef(env="SYNCER_PW"), "opensearch.password", {"SYNCER_PW": secret}, _unused_aws
    )
    assert value == secret
    assert secret not in REDACTOR(value)


@pytest.mark.parametrize("environ", [{}, {"SYNCER_PW": ""}], ids=["unset", "empty"])
def test_missing_env_secret_is_a_config_error_naming_key_and_variable(
    environ: dict[str, str],
) -> None:
    """An unset or empty variable stops start-up with an error naming the key and the variable."""
    with pytest.raises(ConfigError) as raised:
        resolve_secret(SecretRef(env="SYNCER_PW"), "opensearch.password", environ, _unused_aws)
    assert "opensearch.password" in str(raised.value)
    assert "SYNCER_PW" in str(raised.value)


def test_secrets_manager_json_secret_yields_its_password_field() -> None:
    """A Secrets Manager secret holding JSON with a password field yields that field."""
    # given a secret as RDS-style JSON
    password = _unique_secret("sm-json")
    aws = FakeAws(secret_string=f'{{"username": "syncer", "password": "{password}"}}')
    # when it is resolved
    value = resolve_secret(SecretRef(secrets_manager="syncer/os"), "opensearch.password", {}, aws)
    # then the password field was taken from the named secret
    assert value == password
    assert aws.calls == [("secretsmanager", "get_secret_value", {"SecretId": "syncer/os"})]
    assert REDACTOR(password) == "***"


def test_secrets_manager_plain_string_is_the_password() -> None:
    """A Secrets Manager secret that is not JSON is the password itself."""
    password = _unique_secret("sm-plain")
    value = resolve_secret(
        SecretRef(secrets_manager="syncer/os"), "opensearch.password", {}, FakeAws(password)
    )
    assert value == password


def test_ssm_parameter_is_read_decrypted() -> None:
    """An ``ssm_parameter`` secret is the SecureString's decrypted value."""
    # given an SSM parameter
    password = _unique_secret("ssm")
    aws = FakeAws(parameter=password)
    # when it is resolved
    value = resolve_secret(SecretRef(ssm_parameter="/syncer/redis"), "redis.password", {}, aws)
    # then it was read with decryption, and is masked from now on
    assert value == password
    assert aws.calls == [
        ("ssm", "get_parameter", {"Name": "/syncer/redis", "WithDecryption": True})
    ]
    assert REDACTOR(f"AUTH {password}") == "AUTH ***"


def test_unconfigured_secret_resolves_to_none() -> None:
    """A SecretRef with no source means no password."""
    assert resolve_secret(SecretRef(), "redis.password", {}, _unused_aws) is None


@pytest.mark.parametrize(
    "ref",
    [SecretRef(secrets_manager="syncer/absent"), SecretRef(ssm_parameter="/syncer/absent")],
    ids=["secrets_manager", "ssm_parameter"],
)
def test_secret_that_does_not_exist_is_a_config_error_naming_the_key(ref: SecretRef) -> None:
    """A secret source naming a missing secret stops start-up with an error naming the key."""
    with pytest.raises(ConfigError, match=r"opensearch\.password"):
        resolve_secret(ref, "opensearch.password", {}, MissingAws())


# --- secrets and auth in the configuration ------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('password = {env = "X"}', SecretRef(env="X")),
        ('password = {secrets_manager = "syncer/os"}', SecretRef(secrets_manager="syncer/os")),
        ('password = {ssm_parameter = "/syncer/os"}', SecretRef(ssm_parameter="/syncer/os")),
        ('password = "inline"', SecretRef(value="inline")),
    ],
    ids=["env", "secrets_manager", "ssm_parameter", "value"],
)
def test_password_source_parses_to_a_secret_ref(toml: str, expected: SecretRef) -> None:
    """A password given as a table with one source, or as a string, becomes that SecretRef."""
    config = _parse(f"[redis]\n{toml}\n")
    assert config.redis.password == expected
    assert config.redis.password.configured


def test_password_with_two_sources_is_refused() -> None:
    """A password table naming two sources at once is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"redis\.password needs exactly one"):
        _parse('[redis]\npassword = {env = "X", ssm_parameter = "/p"}\n')


def test_password_with_an_unknown_source_is_refused() -> None:
    """A password table with an unknown source key names that key."""
    with pytest.raises(ConfigError, match=r"opensearch\.password\.vault"):
        _parse('[opensearch]\npassword = {vault = "x"}\n')


@pytest.mark.parametrize(
    "settings",
    ['auth = "basic"', 'auth = "basic"\nusername = "syncer"', 'auth = "basic"\npassword = "pw"'],
    ids=["neither", "no-password", "no-username"],
)
def test_basic_auth_without_username_and_password_is_refused(settings: str) -> None:
    """auth = "basic" needs both a username and a password source."""
    with pytest.raises(ConfigError, match=r"opensearch\.username and opensearch\.password"):
        _parse(f"[opensearch]\n{settings}\n")


def test_basic_auth_with_username_and_password_source_is_accepted() -> None:
    """auth = "basic" with a username and a password source parses."""
    config = _parse('[opensearch]\nauth = "basic"\nusername = "syncer"\npassword = {env = "P"}\n')
    assert config.opensearch == OpenSearchConfig(
        auth="basic", username="syncer", password=SecretRef(env="P")
    )


def test_unknown_auth_method_is_refused_by_name() -> None:
    """An auth method other than none, basic or sigv4 is a ConfigError naming opensearch.auth."""
    with pytest.raises(ConfigError, match=r"opensearch\.auth") as raised:
        _parse('[opensearch]\nauth = "kerberos"\n')
    assert "kerberos" in str(raised.value)


def test_unknown_aws_service_is_refused_by_name() -> None:
    """aws_service must be es or aoss."""
    with pytest.raises(ConfigError, match=r"opensearch\.aws_service"):
        _parse('[opensearch]\nauth = "sigv4"\naws_service = "x"\n')


def test_tls_and_acl_settings_parse() -> None:
    """CA bundles, certificate verification and a Redis ACL user are plain settings."""
    config = _parse(
        '[opensearch]\nurl = "https://search:9200"\nverify_certs = false\nca_certs = "/ca.pem"\n'
        '[redis]\nurl = "rediss://cache:6380/0"\nusername = "syncer"\nca_certs = "/ca.pem"\n'
    )
    assert (config.opensearch.verify_certs, config.opensearch.ca_certs) == (False, "/ca.pem")
    assert config.redis == RedisConfig(
        url="rediss://cache:6380/0", username="syncer", ca_certs="/ca.pem"
    )
