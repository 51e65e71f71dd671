# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Who may use the server: anyone on this machine when it listens on a loopback address (the default), only
holders of the API key (a bearer token, compared in constant time) when it listens on the network, unless the
operator says `--no-auth` explicitly."""

import hmac
import ipaddress
import logging
import os
from pathlib import Path


logger = logging.getLogger(__name__)


class ExposureError(ValueError):
    """A server configuration that would expose the model unsafely, or an unusable key file."""


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def read_api_key(path: str | os.PathLike) -> str:
    """The key in `path` (surrounding whitespace dropped); [`ExposureError`] for a missing, empty or short one."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ExposureError(f"--api-key-file {path} cannot be read ({error}).") from error
    if not key:
        raise ExposureError(f"--api-key-file {path} is empty; write a long random key into it.")
    if len(key) < 16:
        raise ExposureError(
            f"--api-key-file {path} holds a {len(key)}-character key; use at least 16 characters (e.g. "
            '`python -c "import secrets; print(secrets.token_urlsafe(32))" > key.txt`).'
        )
    if any(character.isspace() for character in key) or not key.isprintable():
        raise ExposureError(f"--api-key-file {path}: the key must be one line without spaces.")
    return key


def check_exposure(host: str, api_key_file: str | os.PathLike | None, no_auth: bool) -> str | None:
    """The API key the server requires (None: none), after refusing a non-loopback `host` with neither a key nor
    `no_auth` ([`ExposureError`]). `no_auth` on a network address is logged as a warning."""
    if api_key_file is not None and no_auth:
        raise ExposureError("Pass --api-key-file or --no-auth, not both.")
    if api_key_file is not None:
        return read_api_key(api_key_file)
    if is_loopback(host):
        return None
    if not no_auth:
        raise ExposureError(
            f"--host {host} is reachable from other machines: pass --api-key-file (clients then send "
            "'Authorization: Bearer <key>'), or --no-auth to serve anyone who can reach the port."
        )
    logger.warning(
        "serving on %s WITHOUT authentication (--no-auth): anyone who can reach this port can use the model", host
    )
    return None


def bearer_matches(authorization: str | None, key: str) -> bool:
    """Whether an `Authorization` header carries `key` as its bearer token (compared in constant time)."""
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), key.encode("utf-8"))


__all__ = ["ExposureError", "bearer_matches", "check_exposure", "is_loopback", "read_api_key"]
