"""Passwords from the environment, Secrets Manager or SSM, and their redaction from every log line."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from syncer.config import SecretRef
from syncer.errors import ConfigError

_URL_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]+)@"
)


class Redactor:
    """Masks known secrets and any ``scheme://user:password@`` in text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 3:  # masking "a" would garble every message
            with self._lock:
                self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


# Shared by the log formatter and every place that turns an error into text.
REDACTOR = Redactor()


def url_password(url: str) -> str | None:
    """The password in a URL's userinfo, if any (so it can be redacted)."""
    password = urlsplit(url).password
    return unquote(password) if password else None


def resolve_secret(
    ref: SecretRef,
    key: str,
    environ: Mapping[str, str],
    aws_client: Callable[[str], Any],
) -> str | None:
    """The secret's value, read once at start; registered with the redactor."""
    value: str | None = None
    if ref.value is not None:
        value = ref.value
    elif ref.env is not None:
        value = environ.get(ref.env)
        if not value:
            raise ConfigError(f"{key}: environment variable {ref.env} is not set")
    elif ref.secrets_manager is not None:
        client = aws_client("secretsmanager")
        what = f"secret {ref.secrets_manager}"
        response = _fetch(key, what, client.get_secret_value, SecretId=ref.secrets_manager)
        if not isinstance(response.get("SecretString"), str):
            raise ConfigError(f"{key}: {what} has no SecretString")
        value = _password_from_secret(response["SecretString"])
    elif ref.ssm_parameter is not None:
        client = aws_client("ssm")
        what = f"SSM parameter {ref.ssm_parameter}"
        response = _fetch(
            key, what, client.get_parameter, Name=ref.ssm_parameter, WithDecryption=True
        )
        value = response["Parameter"]["Value"]
    REDACTOR.add(value)
    return value


def _fetch(key: str, what: str, call: Callable[..., Any], **request: Any) -> Any:
    from botocore.exceptions import ClientError

    try:
        return call(**request)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("ResourceNotFoundException", "ParameterNotFound"):
            raise ConfigError(f"{key}: {what} not found") from None
        raise


def _password_from_secret(raw: str) -> str:
    # Secrets Manager often holds {"username": ..., "password": ...}; a plain string is the password.
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(parsed, dict) and isinstance(parsed.get("password"), str):
        return str(parsed["password"])
    return raw
