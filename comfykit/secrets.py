"""Keeping credentials out of what comfykit shows: logs, errors, ``--json``, config listings, sidecars.

A credential reaches comfykit in four shapes: a config key marked ``secret`` (token, password,
API key), a value of ``comfyui.headers``, a password inside a URL, and a DSN's password.  This
module finds them in a config (:func:`secrets_of`), takes them out of URLs (:func:`redact_url`),
and masks them wherever they may be echoed back, in text or in nested data
(:class:`SecretMask`), such as a 401 page that repeats the request's headers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "SECRET_NAME", "MaskingFilter", "SecretMask", "redact_url", "secrets_of", "without_credentials"]

MASK = "***"

#: Names (of config keys, headers, query parameters, JSON fields) whose values are credentials.
SECRET_NAME = re.compile(r"token|api[-_]?key|authorization|password|passwd|secret|cookie|credential", re.IGNORECASE)

# Shorter values would mask ordinary words ("on", "yes") in unrelated text.
_MIN_SECRET_LENGTH = 4


def redact_url(url: str) -> str:
    """``url`` without the user's password, and with secret-named query parameters masked."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url  # not a URL we can take apart; the caller reports it as invalid
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:{MASK}@{parts.hostname or ''}" + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_NAME.search(name) for name, _ in pairs):
            query = urlencode([(name, MASK if SECRET_NAME.search(name) else value) for name, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def without_credentials(url: str) -> str:
    """``url`` without the user information it may carry (``user:password@``), whatever else it holds.

    Text that is not a parsable URL loses everything up to its last ``@`` the same way, so
    nothing before it (a password) can show.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2]
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [value for name, value in parse_qsl(parts.query) if SECRET_NAME.search(name)]
    return found


def secrets_of(values: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> set[str]:
    """Every credential in flat dotted config ``values``: secret keys, header values, URL passwords.

    :param secret_keys: dotted keys the registry marks secret; keys whose name looks like a
        credential (``*.token``, ``*.api_key``...) count too, so a plugin's own keys are covered.
    """
    marked = set(secret_keys)
    found: set[str] = set()
    for dotted, value in values.items():
        if value is None:
            continue
        if dotted in marked or SECRET_NAME.search(dotted.rsplit(".", 1)[-1]):
            if isinstance(value, str):
                found.add(value)
            continue
        if dotted == "comfyui.headers" and isinstance(value, Mapping):
            found.update(str(v) for v in value.values() if v is not None)
        elif isinstance(value, str) and "://" in value:
            found.update(_url_secrets(value))
        elif isinstance(value, (list, tuple)):
            for item in value:
                text = item.get("url") if isinstance(item, Mapping) else item
                if isinstance(text, str):
                    found.update(_url_secrets(text))
    return {secret for secret in found if len(secret) >= _MIN_SECRET_LENGTH}


class SecretMask:
    """Replaces known secret values with ``***`` in text and in nested data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values masked, longest first."""
        return tuple(self._secrets)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def data(self, value: Any) -> Any:
        """A copy of JSON-like ``value`` with secrets masked in strings and secret-named fields hidden."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                key: (MASK if SECRET_NAME.search(str(key)) and item not in (None, "") else self.data(item))
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.data(item) for item in value]
        return value


class MaskingFilter(logging.Filter):
    """A handler filter that masks secrets in each record's final message (arguments included)."""

    def __init__(self, mask: SecretMask) -> None:
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        if self.mask:
            message = record.getMessage()
            masked = self.mask.text(message)
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info:
                # Formatters reuse exc_text once set (by this or an earlier handler): mask that text.
                text = record.exc_text or logging.Formatter().formatException(record.exc_info)
                record.exc_text = self.mask.text(text)
        return True
