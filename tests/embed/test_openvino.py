"""The OpenVINO export: made once, written atomically, reused until the model changes; no telemetry."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from qa.embed.openvino import ExportManifest, ensure_export


def _fake_exporter(calls: list[Path]) -> Callable[..., None]:
    """Stands in for export_openvino: writes the files of an export, quickly."""

    def export(source: Path, target: Path, *, fingerprint: str, keep_onnx: bool = False) -> None:
        calls.append(target)
        for name in ("openvino_model.xml", "openvino_model.bin", "tokenizer.json"):
            (target / name).write_text(name, encoding="utf-8")
        manifest = ExportManifest(str(source), fingerprint, ("input_ids",), 256, False, 0, "mean", True, 384)
        manifest.write(target)

    return export


def test_export_is_made_once_then_reused_until_the_model_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"weights")
    target = tmp_path / "cache" / "model" / "openvino"
    calls: list[Path] = []
    monkeypatch.setattr("qa.embed.openvino.export_openvino", _fake_exporter(calls))

    assert ensure_export(source, target) == target
    made = (target / "qa-export.json").stat().st_mtime_ns
    assert ensure_export(source, target) == target
    assert len(calls) == 1  # the second load found the export
    assert (target / "qa-export.json").stat().st_mtime_ns == made
    assert calls[0] != target  # written elsewhere, then renamed into place
    assert [p.name for p in target.parent.iterdir()] == ["openvino"]

    (source / "model.safetensors").write_bytes(b"new weights!")
    ensure_export(source, target)
    assert len(calls) == 2  # other model files: exported again, in place of the old export
    assert [p.name for p in target.parent.iterdir()] == ["openvino"]

    (target / "openvino_model.bin").unlink()  # an incomplete export is not used
    ensure_export(source, target)
    assert len(calls) == 3


def test_failed_export_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "config.json").write_text("{}", encoding="utf-8")

    def half_an_export(source: Path, target: Path, *, fingerprint: str, keep_onnx: bool = False) -> None:
        (target / "openvino_model.xml").write_text("<net/>", encoding="utf-8")
        raise RuntimeError("converter exploded")

    monkeypatch.setattr("qa.embed.openvino.export_openvino", half_an_export)
    target = tmp_path / "cache" / "model" / "openvino"
    with pytest.raises(RuntimeError, match="converter exploded"):
        ensure_export(source, target)
    assert list(target.parent.iterdir()) == []


def test_importing_openvino_sends_no_usage_telemetry() -> None:
    script = (
        "import sys; from qa.embed.runtime import import_openvino; import_openvino(); "
        "sys.exit('openvino_telemetry' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 0
