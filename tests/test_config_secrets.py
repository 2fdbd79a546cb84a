"""The config never shows a credential: not in redacted(), not in `comfykit config`, not in its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfykit.config import load_config
from comfykit.errors import ConfigError

CONFIG = """\
comfyui:
  url: http://ann:url-pa55word@gpu1:8188
  token: tok-s3cret-value
  headers:
    X-Api-Key: header-s3cret
servers:
  - http://bob:server-pa55@gpu2:8188
"""

SECRETS = ("url-pa55word", "tok-s3cret-value", "header-s3cret", "server-pa55")


def test_redacted_masks_keys_headers_and_url_passwords(tmp_path: Path) -> None:
    path = tmp_path / "comfykit.yaml"
    path.write_text(CONFIG)
    shown = json.dumps(load_config(path=path).redacted())
    for secret in SECRETS:
        assert secret not in shown
    assert "gpu1:8188" in shown and "gpu2:8188" in shown and "X-Api-Key" in shown


def test_comfykit_config_shows_no_credential(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from comfykit_cli import main

    path = tmp_path / "comfykit.yaml"
    path.write_text(CONFIG)
    for arguments in (["config"], ["--json", "config"]):
        assert main(["--config", str(path), *arguments]) == 0
        shown = capsys.readouterr()
        assert "gpu1" in shown.out
        for secret in SECRETS:
            assert secret not in shown.out + shown.err


@pytest.mark.parametrize(
    ("text", "secret"),
    [("comfyui:\n  token: [not-text-s3cret]\n", "not-text-s3cret"),
     ("comfyui:\n  headers: just-a-s3cret-string\n", "just-a-s3cret-string")],
)
def test_a_bad_secret_value_is_not_echoed_in_the_error(tmp_path: Path, text: str, secret: str) -> None:
    path = tmp_path / "comfykit.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not shown") as caught:
        load_config(path=path)
    assert secret not in str(caught.value)


def test_a_bad_secret_in_the_environment_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="COMFYKIT_COMFYUI_HEADERS") as caught:
        load_config(env={"COMFYKIT_COMFYUI_HEADERS": "no-equals-s3cret"})
    assert "no-equals-s3cret" not in str(caught.value)
