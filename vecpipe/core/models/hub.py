"""Pull a sentence-transformers checkpoint from the Hugging Face hub (optional `hub` extra).

vecpipe touches the network only here, and only for an explicit `-m hf:ORG/NAME`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from vecpipe.core.errors import ModelError

# Only what the converter reads: no pickles, no torch weights.
CHECKPOINT_PATTERNS = [
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "tokenizer_config.json",  # sentence-transformers 6.x keeps the maximum length here
    "1_Pooling/config.json",
    "*_Dense/config.json",
    "*_Dense/model.safetensors",
    "0_StaticEmbedding/model.safetensors",  # sentence-transformers' static models keep the table here
    "0_StaticEmbedding/tokenizer.json",
]


def download_checkpoint(repo_id: str, notify: Callable[[str], None]) -> Path:
    try:
        import huggingface_hub
    except ImportError:
        raise ModelError(
            f"pulling hf:{repo_id} needs the hub extra (`pip install 'vecpipe[hub]'`); "
            "offline, pass a local sentence-transformers checkpoint directory with -m instead"
        ) from None
    notify(f"downloading {repo_id} from the Hugging Face hub")
    try:
        path = huggingface_hub.snapshot_download(repo_id=repo_id, allow_patterns=CHECKPOINT_PATTERNS)
    except Exception as exc:  # the hub raises many kinds: offline, 404, gated, timeouts
        raise ModelError(
            f"could not download hf:{repo_id} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "offline, pass a local sentence-transformers checkpoint directory with -m instead"
        ) from None
    return Path(path)
