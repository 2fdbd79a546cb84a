"""``comfykit plugin new``: the package it writes passes its own tests, installed in a venv and uninstalled."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from comfykit.testing.cli_runner import CliRunner


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYKIT_", "PYTEST_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    result = CliRunner(cwd=tmp_path)("plugin", "new", "watermark")
    assert result.exit_code == 0, result
    root = tmp_path / "comfykit-watermark"
    assert "Next: cd comfykit-watermark && pip install -e '.[test]' && pytest" in result.stdout
    return root


def test_the_package_has_the_entry_point_and_one_hook_of_each_family(package: Path) -> None:
    assert '[project.entry-points.comfykit]\nwatermark = "comfykit_watermark"' in (package / "pyproject.toml").read_text()
    source = (package / "src" / "comfykit_watermark" / "__init__.py").read_text()
    for hook in ("comfykit_add_config", "comfykit_configure", "comfykit_register_commands",
                 "comfykit_validate_workflow", "comfykit_prepare_prompt", "comfykit_handle_event",
                 "comfykit_job_completed", "comfykit_store_outputs"):
        assert f"def {hook}(" in source
    assert "comfykit_cli" in (package / "tests" / "test_comfykit_watermark.py").read_text()


def test_a_bad_name_or_an_existing_folder_is_refused(tmp_path: Path) -> None:
    run = CliRunner(cwd=tmp_path)
    bad = run("plugin", "new", "Water Mark")
    assert bad.exit_code == 2 and "not a usable plugin name" in bad.stderr
    assert run("plugin", "new", "comfykit-wm").exit_code == 0 and (tmp_path / "comfykit-wm").is_dir()
    again = run("plugin", "new", "wm")
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_its_tests_pass_uninstalled(package: Path) -> None:
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_its_tests_pass_after_pip_install_e_in_a_fresh_venv(package: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # --system-site-packages reaches the base interpreter only: make this venv's packages (comfykit,
    # pytest, setuptools) visible too, so nothing is downloaded.
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        tmp_path).stdout.strip())
    (purelib / "_outer_venv.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    install = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                    "--no-build-isolation", "-q", "-e", ".[test]"], package)
    assert install.returncode == 0, install.stdout + install.stderr
    listed = _run([str(python), "-m", "comfykit", "plugins"], package)
    assert "watermark  (comfykit-watermark 0.1.0, entry point of comfykit-watermark)" in listed.stdout, listed
    tests = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], package)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout
