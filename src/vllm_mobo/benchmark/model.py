"""The model a run benchmarks: a Hugging Face id or directory, or an architecture run with dummy weights."""

from __future__ import annotations

import json
from pathlib import Path


def write_model_dir(model_cfg: dict, directory: Path | str) -> Path:
    """For ``architecture`` models, write ``config.json`` (and a synthetic word-level tokenizer when the
    ``tokenizers`` and ``transformers`` packages are present, for serving) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arch = dict(model_cfg["architecture"])
    with open(directory / "config.json", "w") as fh:
        json.dump(arch, fh, indent=2, sort_keys=True)
    return directory


def model_location(model_cfg: dict, model_dir: Path | str | None) -> tuple[str, dict]:
    """Return (model argument for vLLM, extra engine args): dummy weights and no tokenizer for architectures."""
    if "architecture" in model_cfg:
        return str(model_dir), {"load_format": "dummy", "skip_tokenizer_init": True}
    return model_cfg["path"], {"load_format": model_cfg.get("load_format", "auto")}


def vocab_size(model_cfg: dict, model: str) -> int:
    """Vocabulary size from the architecture or the model's config.json (a local directory)."""
    if "architecture" in model_cfg:
        return int(model_cfg["architecture"]["vocab_size"])
    cfg = Path(model) / "config.json"
    if cfg.exists():
        return int(json.loads(cfg.read_text())["vocab_size"])
    from transformers import AutoConfig  # a hub id: ask transformers (vLLM depends on it)

    return int(AutoConfig.from_pretrained(model).vocab_size)
