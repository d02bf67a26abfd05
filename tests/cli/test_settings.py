"""One validation point per setting: the library config that holds a setting checks it (SettingError naming
the option); the CLI does not check again, it turns that error into a usage error (exit 2) naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nima_rt import ScorerConfig, SettingError
from nima_rt.cli import app


@pytest.mark.parametrize(
    ("given", "option", "message"),
    [
        ({"device": "gpu"}, "--device", "--device must be one of auto, cpu, cuda, got 'gpu'"),
        ({"backend": "tensorflow"}, "--backend", "--backend must be one of "),
        ({"precision": "int4"}, "--precision", "precision must be one of fp32, fp16, int8, got 'int4'"),
        ({"gpu_decode": "maybe"}, "--gpu-decode", "gpu_decode must be one of auto, on, off, got 'maybe'"),
        ({"threads": 1, "streams": 2}, "--streams", "threads (1) must be >= streams (2)"),
    ],
)
def test_the_config_checks_each_setting_and_names_its_option(given: dict[str, object], option: str,
                                                             message: str) -> None:
    with pytest.raises(SettingError) as info:
        ScorerConfig(**given)  # type: ignore[arg-type]
    assert info.value.option == option and str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--device", "gpu"], "--device"),
        (["--backend", "tensorflow"], "--backend"),
        (["--precision", "int4"], "--precision"),
        (["--gpu-decode", "maybe"], "--gpu-decode"),
    ],
)
def test_the_cli_reports_the_configs_refusal_as_a_usage_error(tiny_model: Path, photo_dir: Path, args: list[str],
                                                              option: str) -> None:
    for command in (["score", str(photo_dir)], ["report", str(photo_dir)]):
        result = CliRunner().invoke(app, [*command, "-m", str(tiny_model), *args])
        assert result.exit_code == 2, (command, result.output)
        assert f"Invalid value for {option}" in result.output


def test_info_checks_device_and_backend_once(tiny_model: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(tiny_model), "--device", "gpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "--device must be one of auto, cpu, cuda, got 'gpu'" in result.output
