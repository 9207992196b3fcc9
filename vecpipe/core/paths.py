"""Where vecpipe keeps its files: $VECPIPE_HOME, else $XDG_CACHE_HOME/vecpipe, else ~/.cache/vecpipe."""
from __future__ import annotations

import os
from pathlib import Path


def vecpipe_home() -> Path:
    env = os.environ.get("VECPIPE_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vecpipe"


def models_dir() -> Path:
    return vecpipe_home() / "models"


def embedding_cache_dir() -> Path:
    return vecpipe_home() / "embeddings"
