"""Word tokenizer for prompts: the world's vocabulary plus hashed buckets for other words.

Known words get their own ids; any other word lands in one of HASH_BUCKETS ids by a stable
hash, so an out-of-vocabulary prompt still tokenizes (the model learns those ids carry no
meaning) and the same unknown word always gets the same id.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from engine.prompt import KNOWN_WORDS

MAX_TOKENS = 16
HASH_BUCKETS = 32
PAD, CLS = 0, 1
_SPECIAL = 2

VOCAB: tuple[str, ...] = tuple(sorted({w for words in KNOWN_WORDS.values() for w in words}))
_IDS = {word: _SPECIAL + i for i, word in enumerate(VOCAB)}
VOCAB_SIZE = _SPECIAL + len(VOCAB) + HASH_BUCKETS


def token_id(word: str) -> int:
    known = _IDS.get(word)
    if known is not None:
        return known
    return _SPECIAL + len(VOCAB) + zlib.crc32(word.encode()) % HASH_BUCKETS


def tokenize(text: str) -> np.ndarray:
    """[MAX_TOKENS] int64: CLS, then the first MAX_TOKENS - 1 words, then padding."""
    words = re.findall(r"[a-z']+", text.lower())[: MAX_TOKENS - 1]
    ids = np.full(MAX_TOKENS, PAD, dtype=np.int64)
    ids[0] = CLS
    ids[1 : 1 + len(words)] = [token_id(w) for w in words]
    return ids
