"""Credentials are found in a config and masked in URLs, text, nested data and log records."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from comfykit.secrets import MASK, MaskingFilter, SecretMask, redact_url, secrets_of


def test_a_url_keeps_its_user_but_not_its_password() -> None:
    assert redact_url("http://alice:hunter22@gpu1:8188/base?x=1") == "http://alice:***@gpu1:8188/base?x=1"
    assert redact_url("http://gpu1:8188/") == "http://gpu1:8188/"


def test_secret_named_query_parameters_are_masked() -> None:
    assert redact_url("https://h/ws?clientId=abc&token=t0k3n") == "https://h/ws?clientId=abc&token=***"


def test_a_url_that_cannot_be_parsed_is_returned_as_it_is() -> None:
    assert redact_url("http://[::1") == "http://[::1"


def test_secrets_of_a_config_cover_keys_headers_and_urls() -> None:
    values = {
        "comfyui.url": "http://bob:pa55word@h:8188",
        "comfyui.token": "tok-123456",
        "comfyui.headers": {"X-Api-Key": "hdr-secret", "X-Team": "render-farm"},
        "servers": [{"url": "http://carol:c4rolpw@g2:8188"}, "http://dave:d4vepw@g3:8188"],
        "myplugin.api_key": "plug-key-9",
        "comfyui.timeout": 30,
        "comfyui.password": None,
    }
    found = secrets_of(values, secret_keys={"comfyui.token"})
    assert found == {"pa55word", "tok-123456", "hdr-secret", "render-farm", "c4rolpw", "d4vepw", "plug-key-9"}


def test_masking_text_and_data() -> None:
    mask = SecretMask(["tok-123456", "tok-123456-long", "ab"])
    assert mask.text("Authorization: Bearer tok-123456-long") == f"Authorization: Bearer {MASK}"
    assert mask.text("ab is too short to be taken for a secret") == "ab is too short to be taken for a secret"
    data = {"headers": {"Authorization": "Bearer x", "Accept": "tok-123456"}, "list": ["tok-123456", 3]}
    assert mask.data(data) == {"headers": {"Authorization": MASK, "Accept": MASK}, "list": [MASK, 3]}


@given(st.text(min_size=4, alphabet=st.characters(blacklist_categories=("Cs",))), st.text(), st.text())
def test_a_masked_text_never_contains_the_secret(secret: str, before: str, after: str) -> None:
    masked = SecretMask([secret]).text(before + secret + after)
    assert secret not in masked or secret in MASK


def test_the_log_filter_masks_messages_arguments_and_tracebacks(caplog) -> None:
    logger = logging.getLogger("comfykit.test_secrets")
    handler_filter = MaskingFilter(SecretMask(["s3cr3t-value"]))
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.DEBUG, logger="comfykit.test_secrets"):
            logger.warning("sending %s", {"Authorization": "Bearer s3cr3t-value"})
            try:
                raise RuntimeError("server echoed s3cr3t-value")
            except RuntimeError:
                logger.exception("failed")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert "s3cr3t-value" not in caplog.text
    assert "Bearer ***" in caplog.text and "server echoed ***" in caplog.text


def test_without_credentials_drops_the_user_information_even_from_broken_urls() -> None:
    from comfykit.secrets import without_credentials

    assert without_credentials("http://ann:pw@[::1]:8188/x?y=1") == "http://[::1]:8188/x?y=1"
    assert without_credentials("http://gpu1:8188") == "http://gpu1:8188"
    assert without_credentials("http://ann:pw@[::1") == "[::1"  # unparsable: cut at the last "@"
