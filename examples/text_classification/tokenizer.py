"""A tokenizer a device can reproduce: hashed word unigrams, bigrams and character 3/4/5-grams.

Everything works on the UTF-8 bytes of the text, with integer arithmetic only, so a C firmware
gets bit-identical ids (docs/distillation.md has the C version):

1. Lower-case the ASCII letters A-Z (other bytes unchanged).
2. Tokens: maximal runs of "word bytes" (a-z, 0-9 and every byte >= 0x80, so multi-byte UTF-8
   characters stay inside words); every other byte except space, tab, CR, LF is a one-byte token
   (punctuation: "?", "'", ",", ...).
3. Features of the student (a bag: each feature counts once, value 1.0):
   - unigram:  the bytes  b"w" + token
   - bigram:   the bytes  b"b" + token1 + b" " + token2   for each adjacent pair
   - char n-grams, n = 3, 4 and 5, of b"<" + token + b">" for word tokens: b"c" + gram
   index = fnv1a32(feature bytes) & (STUDENT_BUCKETS - 1).
4. Token ids of the teacher: 1 + fnv1a32(b"w" + token) % (TEACHER_VOCAB - 1), the first MAX_TOKENS
   tokens, padded with id 0.

fnv1a32: h = 2166136261; for each byte: h = ((h ^ byte) * 16777619) mod 2^32.
"""
from __future__ import annotations

import numpy as np

STUDENT_BUCKETS = 16384       # power of two
TEACHER_VOCAB = 32768
MAX_TOKENS = 32
CHAR_NGRAMS = (3, 4, 5)

_FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619


def fnv1a32(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def _is_word_byte(b: int) -> bool:
    return 0x61 <= b <= 0x7A or 0x30 <= b <= 0x39 or b >= 0x80


def tokenize(text: str) -> list[bytes]:
    data = bytes(b + 32 if 0x41 <= b <= 0x5A else b for b in text.encode("utf-8"))
    tokens, cur = [], bytearray()
    for b in data:
        if _is_word_byte(b):
            cur.append(b)
            continue
        if cur:
            tokens.append(bytes(cur))
            cur = bytearray()
        if b not in (0x20, 0x09, 0x0D, 0x0A):
            tokens.append(bytes([b]))
    if cur:
        tokens.append(bytes(cur))
    return tokens


def student_features(tokens: list[bytes]) -> list[bytes]:
    feats = [b"w" + t for t in tokens]
    feats += [b"b" + a + b" " + b for a, b in zip(tokens, tokens[1:])]
    for t in tokens:
        if not _is_word_byte(t[0]):
            continue
        padded = b"<" + t + b">"
        for n in CHAR_NGRAMS:
            feats += [b"c" + padded[i:i + n] for i in range(len(padded) - n + 1)]
    return feats


class Featurizer:
    """Memoizes the hashes (the same n-grams recur across a data set); results equal the spec above."""

    def __init__(self, buckets: int = STUDENT_BUCKETS, vocab: int = TEACHER_VOCAB, max_tokens: int = MAX_TOKENS):
        if buckets & (buckets - 1):
            raise ValueError("buckets must be a power of two")
        self.buckets, self.vocab, self.max_tokens = buckets, vocab, max_tokens
        self._h: dict[bytes, int] = {}

    def _hash(self, f: bytes) -> int:
        h = self._h.get(f)
        if h is None:
            h = self._h[f] = fnv1a32(f)
        return h

    def features(self, texts: list[str]) -> np.ndarray:
        """[N, buckets] float32 bag (1.0 where a feature hashes)."""
        out = np.zeros((len(texts), self.buckets), dtype=np.float32)
        for i, text in enumerate(texts):
            for f in student_features(tokenize(text)):
                out[i, self._hash(f) & (self.buckets - 1)] = 1.0
        return out

    def token_ids(self, texts: list[str]) -> np.ndarray:
        """[N, max_tokens] int64 teacher ids (0 = padding)."""
        out = np.zeros((len(texts), self.max_tokens), dtype=np.int64)
        for i, text in enumerate(texts):
            for j, t in enumerate(tokenize(text)[:self.max_tokens]):
                out[i, j] = 1 + self._hash(b"w" + t) % (self.vocab - 1)
        return out
