"""The example's tokenizer: FNV-1a values, tokens, and the C version (featurize.c) bit-identical."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import shared_data

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "text_classification"
sys.path.insert(0, str(EXAMPLE))
from tokenizer import Featurizer, fnv1a32, tokenize  # noqa: E402

TEXTS = ["What city is the Eiffel Tower in ?", "How did serfdom develop in and then leave Russia ?",
         "Who's \"the\" café owner, Zoë?", "", "   ", "a", "A-B c\td\r\n", "1984 vs. 2001 : A Space Odyssey"]


def test_fnv1a_known_values():
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_tokens():
    assert tokenize("Who's \"the\" Café owner?") == [b"who", b"'", b"s", b'"', b"the", b'"', "café".encode(), b"owner",
                                                     b"?"]
    assert tokenize(" \t\n") == []


def test_token_ids_pad_and_truncate():
    ids = Featurizer(max_tokens=4).token_ids(["a b", "a b c d e f"])
    assert ids[0, 2:].tolist() == [0, 0] and ids[0, 0] == ids[1, 0] and (ids[1] > 0).all()


def _c_featurizer(tmp_path):
    exe = tmp_path / "featurize"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-DEDGEC_TC_MAIN",
                    str(EXAMPLE / "featurize.c"), "-o", str(exe)], check=True)
    texts = [t.replace("\n", " ").replace("\r", " ") for t in TEXTS]
    texts.append(" ".join(f"w{i}" for i in range(40)))           # more tokens than ids: truncated at 32
    test_tsv = shared_data("textcls", "trec6", "test.tsv")
    if test_tsv.is_file():
        texts += [line.rstrip("\n").split("\t", 1)[1] for line in open(test_tsv, encoding="utf-8") if line.strip()]
    return exe, texts


def _run(exe, texts, *args):
    out = subprocess.run([str(exe), *args], input="\n".join(texts) + "\n", capture_output=True, text=True,
                         check=True, encoding="utf-8").stdout.split("\n")[:-1]
    assert len(out) == len(texts)
    return out


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_featurizer_is_bit_identical(tmp_path):
    exe, texts = _c_featurizer(tmp_path)
    want = Featurizer().features(texts)
    for text, row, line in zip(texts, want, _run(exe, texts)):
        assert np.nonzero(row)[0].tolist() == [int(v) for v in line.split()], text


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_token_ids_are_bit_identical(tmp_path):
    exe, texts = _c_featurizer(tmp_path)
    want = Featurizer().token_ids(texts)
    assert want.shape[1] == 32 and (want[len(TEXTS)] > 0).all()   # the 40-token text fills all 32
    for text, row, line in zip(texts, want, _run(exe, texts, "--ids")):
        assert row.tolist() == [int(v) for v in line.split()], text
