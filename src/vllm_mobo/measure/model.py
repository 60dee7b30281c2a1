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
    try:
        write_synthetic_tokenizer(directory, int(model_cfg.get("tokenizer_vocab_size") or arch["vocab_size"]))
    except ImportError:  # offline mode needs no tokenizer; online mode checks for one (has_tokenizer)
        pass
    return directory


#: Special tokens of the synthetic tokenizer: none is a prefix of a vocabulary word ``t<N>``, so a prompt of
#: words re-encodes to the same ids (a bos named ``t1`` would split ``t17`` into two).
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def synthetic_vocab(vocab_size: int) -> dict[str, int]:
    """``t0 .. t{V-1}`` for every id, except ids 0/1/2, which are the special tokens ``<unk>``, ``<s>``, ``</s>``
    (prompts never contain them: :data:`.workload.FIRST_ORDINARY_TOKEN` is above)."""
    vocab = {f"t{i}": i for i in range(3, vocab_size)}
    vocab.update({"<unk>": 0, "<s>": 1, "</s>": 2})
    return vocab


def write_synthetic_tokenizer(directory: Path | str, vocab_size: int) -> Path:
    """A word-level tokenizer over :func:`synthetic_vocab` with a whitespace pre-tokenizer, saved with
    transformers' ``PreTrainedTokenizerFast.save_pretrained``: random token ids decode to words (``t17 t403``)
    that encode back to the same ids, one token per word, so a server with dummy weights can be driven with
    text or token-id prompts and its output tokens counted. Needs the ``tokenizers`` and ``transformers``
    packages (vLLM depends on both); raises ImportError without them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 16:
        raise ValueError(f"vocab_size {vocab_size} is too small for a synthetic tokenizer (minimum 16)")
    tok = Tokenizer(models.WordLevel(vocab=synthetic_vocab(vocab_size), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=1 << 20, **SPECIAL_TOKENS)
    fast.save_pretrained(str(directory))
    return Path(directory)


def has_tokenizer(directory: Path | str) -> bool:
    return (Path(directory) / "tokenizer.json").exists()


def model_location(model_cfg: dict, model_dir: Path | str | None, serving: bool = False) -> tuple[str, dict]:
    """Return (model argument for vLLM, extra engine args): dummy weights for architectures, and no tokenizer
    offline (prompts are token ids); a server (``serving``) needs the synthetic tokenizer written beside them."""
    if "architecture" in model_cfg:
        return str(model_dir), {"load_format": "dummy", **({} if serving else {"skip_tokenizer_init": True})}
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
