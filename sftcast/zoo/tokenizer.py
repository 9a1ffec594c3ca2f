"""The zoo's shared tokenizer: byte-level BPE trained on the corpus train split.

Saved in Hugging Face format (loads with `AutoTokenizer.from_pretrained`). Special tokens: pad,
bos, eos, T5-style sentinels for span corruption and one tag per corpus domain. Encoding adds
bos in front, as Llama tokenizers do; eos is appended by whoever packs documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from sftcast.data.schema import CORPUS_DOMAINS
from sftcast.zoo.objectives import SpecialIds

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
# T5 has 100; span corruption at (0.5, 3) over 256 tokens needs about 40.
NUM_SENTINELS = 100
META_FILE = "sftcast_tokenizer.json"


def sentinel_token(i: int) -> str:
    return f"<extra_id_{i}>"


def domain_tag_token(domain: str) -> str:
    return f"<domain:{domain}>"


SPECIAL_TOKENS: tuple[str, ...] = (
    PAD,
    BOS,
    EOS,
    *(sentinel_token(i) for i in range(NUM_SENTINELS)),
    *(domain_tag_token(d) for d in CORPUS_DOMAINS),
)


def texts_digest(texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def train_tokenizer(
    texts: list[str], vocab_size: int, out_dir: str | Path, model_max_length: int = 256
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `texts` and save it in Hugging Face format to `out_dir`.

    The same texts in the same order give the same tokenizer; a folder already holding the
    tokenizer of these texts and settings is loaded instead of retrained.
    """
    out_dir = Path(out_dir)
    meta = {
        "vocab_size": vocab_size,
        "model_max_length": model_max_length,
        "texts_sha256": texts_digest(texts),
        "special_tokens": list(SPECIAL_TOKENS),
    }
    meta_path = out_dir / META_FILE
    if meta_path.is_file() and json.loads(meta_path.read_text()) == meta:
        return load_tokenizer(out_dir)

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),  # first, so they get ids 0..len-1
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, backend.token_to_id(BOS))],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(SPECIAL_TOKENS[3:]),
        model_max_length=model_max_length,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    meta_path.write_text(json.dumps(meta, indent=2))
    return tokenizer


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(path))


def special_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialIds:
    def id_of(token: str) -> int:
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token!r} token; train it with sftcast.zoo")
        return int(i)

    return SpecialIds(
        pad=id_of(PAD),
        bos=id_of(BOS),
        eos=id_of(EOS),
        sentinels=tuple(id_of(sentinel_token(i)) for i in range(NUM_SENTINELS)),
    )


def tokenizer_fingerprint(path: str | Path) -> str:
    """sha256 of the saved `tokenizer.json`: what a checkpoint's token ids mean."""
    return hashlib.sha256((Path(path) / "tokenizer.json").read_bytes()).hexdigest()
