"""Sparse-input int8 GEMV for ``qdense``: skips the input entries equal to 0 at run time.

A bag-of-words layer (the text student's ``embed``: 1 x 16384 features -> 96, ~76 non-zero
entries per question) reads all N*K weight bytes in the dense GEMV although almost every input
entry is 0. qdense's accumulator is ``sum_k x[k] * w[j, k] + bias[j]`` (the zero-point
correction is folded into the int32 bias, docs/quantization.md), so an entry with x[k] == 0
contributes exactly nothing, whatever the zero point: skipping it is exact. (With a zero point
of 0, the usual case for non-negative uint8 features, these are the entries equal to the zero
point; int8 activations keep their non-zero zero point and gain only where x is 0.)

The PrimFunc is qdense's own dense kernel (``quant._qdense_kernel``, same schedule choice) with
a TIR prologue in front, on the dense kernel's parameter buffers:

1. scan: x is read 32 bytes at a time (four 8-byte words OR-ed: one compare for a block of
   zeros); in a block that is not all zero, each word, then each byte, is tested and the
   column of every non-zero byte is appended to a stack list ``idx`` (``index_list``: uint16
   entries, capacity min(480, K / BREAK_EVEN)). When the list would overflow, the scan stops;
2. a row that fits the list: per chunk of JB = 8 outputs, ``acc[u] = sum_t x[idx[t]] *
   w[j0 + u, idx[t]]`` in int32 (the position and x value loaded once for 8 weight bytes, the
   weights read in place), then qdense's epilogue (bias, ``quant._requant_node``: the bits of
   the numpy reference);
3. a row that overflowed: the dense kernel's body runs (same bits, dense speed + the scan).

``qdense`` chooses it only with evidence (``sparse_gemv_fits``): the node attribute
``input_density`` (fraction of non-zero input entries over the calibration samples, set by
the quantization pass) such that the expected non-zero count is at most half the list, one row,
K >= MIN_K, on a hosted LLVM target (x86-64, AVX2, aarch64, armv7; the scan's 8-byte vector
loads have no C form). Without the attribute nothing changes.

Cost (Zen 4, one thread, the text student's 96 x 16384 weights): ~0.5 us for the scan of an
all-zero row, then ~0.7 ns per gathered weight byte: each byte is a cache line of its own, as
w is [N, K] and rows are K bytes apart.

The [K, N] form (``sparse_kn_qdense``, session 7): when the weights are a graph constant the
compiler stores them transposed (edgec.backend.build's pre-packing, layout ``KN_LAYOUT``; the
graph and the reference keep [N, K]) and the kernel reads, per non-zero x[k], the N contiguous
bytes of row k: one pass over x (the same 32-byte scan), no index list, no dense fallback (a
dense row is exact, only slower), the accumulators on the stack, quant.py's epilogue on vectors
of outputs. ``sparse_kn_fits`` takes it up to K / KN_BREAK_EVEN expected non-zero entries (the
measured break-even against the VNNI GEMV, below). The text student's embed: 0.55 us against
~5 us for the [N, K] form and 29.6 us dense; the text MLP's fc1 (64 x 1024, 3 % non-zero):
0.14 us against 0.61 us dense.
"""
from __future__ import annotations

import tvm

tir = tvm.tirx

# the list of non-zero positions lives on the stack (TVM puts allocations of 1 KiB and more in
# the workspace): 480 uint16 entries (K <= 65536), else 240 int32 ones
CAP16, CAP32 = 480, 240
# dispatch thresholds (see sparse_gemv_fits)
MIN_K = 1024
MAX_ROWS = 1
BLOCK = 32          # bytes scanned per step: four 64-bit words
JB = 8              # outputs per pass over the non-zero list


def expected_nonzeros(density: float, k: int) -> float:
    return float(density) * int(k)


def input_density(attrs) -> float | None:
    """The node's ``input_density`` (fraction of non-zero input entries over the calibration
    samples) as a float in [0, 1], or None when it has no usable one."""
    d = attrs.get("input_density") if hasattr(attrs, "get") else None
    if d is None or isinstance(d, bool):
        return None
    try:
        d = float(d)
    except (TypeError, ValueError):
        return None
    return d if 0.0 <= d <= 1.0 else None


def sparse_gemv_fits(attrs, m: int, k: int) -> bool:
    """True when qdense should run ``sparse_gemv``: the node carries calibration evidence that
    its input is sparse (``input_density`` * K, the expected non-zero count, fits half the index
    list), one row (MAX_ROWS) and a long reduction (K >= MIN_K)."""
    d = input_density(attrs)
    if d is None:
        return False
    return m <= MAX_ROWS and k >= MIN_K and expected_nonzeros(d, k) <= index_list(k)[1] // 2


# beyond K / BREAK_EVEN non-zero entries the dense kernel is faster: measured on the text
# student's embed (96 x 16384, Zen 4, one thread), the sparse path costs ~0.7 ns per gathered
# weight byte (a cache line per byte: rows are K bytes apart), the VNNI GEMV ~13 ps per MAC,
# break-even ~290 non-zeros = K / 56
BREAK_EVEN = 64


def index_list(k: int) -> tuple[str, int]:
    """(dtype, capacity) of the list of non-zero positions for a reduction of length k: the
    stack limit (CAP16 uint16 / CAP32 int32 entries) or K / BREAK_EVEN, the smaller."""
    dtype, cap = ("uint16", CAP16) if k <= 1 << 16 else ("int32", CAP32)
    return dtype, max(1, min(cap, k // BREAK_EVEN))


def _i32(v) -> tir.PrimExpr:
    return tir.const(int(v), "int32")


def _alloc(name: str, shape, dtype: str):
    buf = tir.decl_buffer(shape, dtype, name=name, scope="global")
    return buf, tir.AllocBuffer(buf)


def sparse_gemv(dense: tir.PrimFunc, m: int, n: int, k: int, has_bias: bool, epilogue, cap: int | None = None):
    """``dense`` (qdense's own kernel, params ``(x[m,k], w[n,k] int8, [bias[n] int32,] y[m,n])``)
    with the sparse path in front: y[i, j] = ``epilogue(acc_int32, bias_j or None, j)`` with
    acc = sum_k x[i,k] * w[j,k] over the non-zero x[i,k] (raw x, int32), as described in the
    module doc; ``dense``'s body runs instead when a row has more than ``cap`` non-zero entries."""
    params = list(dense.params)         # TVM 0.27: the parameters are the Buffers themselves
    x, w, y = params[0], params[1], params[-1]
    bias = params[2] if has_bias else None
    x_dtype, out_dtype = str(x.dtype), str(y.dtype)
    xf = tir.decl_buffer((m * k,), x_dtype, name="xf", data=x.data)
    wf = tir.decl_buffer((n * k,), "int8", name="wf", data=w.data)
    yf = tir.decl_buffer((m * n,), out_dtype, name="yf", data=y.data)
    stmts = [tir.DeclBuffer(xf, data=x.data), tir.DeclBuffer(wf, data=w.data), tir.DeclBuffer(yf, data=y.data)]
    idx_dtype, default_cap = index_list(k)
    cap = default_cap if cap is None else int(cap)
    idx, a_idx = _alloc("idx", (cap,), idx_dtype)
    cnt, a_cnt = _alloc("cnt", (1,), "int32")
    dense_rows, a_dense = _alloc("dense_rows", (1,), "int32")
    stmts += [a_idx, a_cnt, a_dense, tir.BufferStore(dense_rows, _i32(0), [0])]

    def xb(e):
        return tir.Cast("int32", tir.BufferLoad(xf, [e]))

    def word(base):          # 8 bytes of x from flat offset base, as one uint64
        return tir.reinterpret("uint64", tir.BufferLoad(xf, [tir.Ramp(base, 1, 8)]))

    zero64 = tir.const(0, "uint64")

    def push(row_off, col):
        # append the column col; on overflow the count becomes cap + 1 and stays (a dense row)
        c = tir.BufferLoad(cnt, [0])
        return tir.IfThenElse(
            tir.BufferLoad(xf, [row_off + col]) != tir.const(0, x_dtype),
            tir.IfThenElse(c < _i32(cap),
                           tir.SeqStmt([tir.BufferStore(idx, tir.Cast(idx_dtype, col), [c]),
                                        tir.BufferStore(cnt, c + 1, [0])]),
                           tir.BufferStore(cnt, _i32(cap + 1), [0])),
            None)

    def epi_store(row_off, j, acc):
        return tir.BufferStore(yf, epilogue(acc, tir.BufferLoad(bias, [j]) if bias is not None else None, j),
                               [row_off + j])

    for i in range(m):
        xoff = i * k
        row = [tir.BufferStore(cnt, _i32(0), [0])]
        nblk = k // BLOCK
        if nblk:
            b = tir.Var("b", "int32")
            col0 = b * BLOCK
            base = xoff + col0
            per_word = []
            for q in range(BLOCK // 8):
                kk = tir.Var(f"kk{q}", "int32")
                per_word.append(tir.IfThenElse(
                    word(base + q * 8) != zero64,
                    tir.For(kk, 0, 8, tir.ForKind.UNROLLED, push(xoff, col0 + q * 8 + kk)), None))
            any_nz = word(base) | word(base + 8) | word(base + 16) | word(base + 24)
            # stop scanning once the row is known dense
            body = tir.IfThenElse(tir.all(any_nz != zero64, tir.BufferLoad(cnt, [0]) <= _i32(cap)),
                                  tir.SeqStmt(per_word), None)
            row.append(tir.For(b, 0, nblk, tir.ForKind.SERIAL, body))
        if k % BLOCK:
            t = tir.Var("t", "int32")
            row.append(tir.For(t, 0, k % BLOCK, tir.ForKind.SERIAL, push(xoff, nblk * BLOCK + t)))

        # phase 2, sparse: JB outputs at a time (the position and x value are loaded once for
        # JB weight bytes), a dot product over the listed positions
        sparse_parts = []
        for j0, jb in ([(None, JB)] if n >= JB else []) + ([(n - n % JB, n % JB)] if n % JB else []):
            jo = tir.Var("jo", "int32")
            tt = tir.Var("tt", "int32")
            pos_var = tir.Var("p", "int32")
            acc_s, a_acc_s = _alloc("acc_s", (jb,), "int32")
            first = jo * JB if j0 is None else _i32(j0)
            xv = tir.Var("xv", "int32")
            # (TVM 0.27: LetStmt binds for the statements that follow it in the sequence)
            inner = tir.SeqStmt([tir.LetStmt(pos_var, tir.Cast("int32", tir.BufferLoad(idx, [tt]))), tir.LetStmt(xv, xb(xoff + pos_var))] + [
                tir.BufferStore(acc_s, tir.BufferLoad(acc_s, [u]) + xv *
                                tir.Cast("int32", tir.BufferLoad(wf, [(first + u) * k + pos_var])), [u])
                for u in range(jb)])
            chunk = tir.SeqStmt(
                [a_acc_s] + [tir.BufferStore(acc_s, _i32(0), [u]) for u in range(jb)]
                + [tir.For(tt, 0, tir.BufferLoad(cnt, [0]), tir.ForKind.SERIAL, inner)]
                + [epi_store(i * n, first + u, tir.BufferLoad(acc_s, [u])) for u in range(jb)])
            sparse_parts.append(tir.For(jo, 0, n // JB, tir.ForKind.SERIAL, chunk) if j0 is None else chunk)
        sparse = tir.SeqStmt(sparse_parts) if len(sparse_parts) > 1 else sparse_parts[0]
        row.append(tir.IfThenElse(tir.BufferLoad(cnt, [0]) <= _i32(cap), sparse,
                                  tir.BufferStore(dense_rows, _i32(1), [0])))
        stmts.extend(row)
    # a row the list could not hold: the dense kernel computes every row (same bits)
    stmts.append(tir.IfThenElse(tir.BufferLoad(dense_rows, [0]) != _i32(0), dense.body, None))
    return tir.PrimFunc(params, tir.SeqStmt(stmts), dense.ret_type, dense.attrs).with_attr("tirx.noalias", True)



# -- the [K, N] form: weights stored transposed at compile time (edgec.backend.build's prepack) --
# Per non-zero x[k] the N weights of row k are contiguous (N / 64 cache lines instead of N lines
# of the [N, K] form): one pass over x, no list, no dense fallback (a dense row is correct, only
# slower). Accumulators: N int32 on the stack (TVM moves 1 KiB and more to the workspace).
KN_MAX_N = 192
# expected non-zero entries up to K / KN_BREAK_EVEN. Measured on Zen 4, 1 thread, one kernel
# (TVM time_evaluator), against qdense's VNNI GEMV on the same [N, K] weights: K = 1024, N = 64
# (the text MLP's fc1): 0.136 us at 3 % non-zero (dense 0.61), 0.17 at 6 %, 0.25 at 12 %, 0.39 at
# 20 %, 0.54 at 30 % (dense 0.61: the break-even); K = 4096, N = 96: 0.82 us at 6 %, 2.25 at 20 %
# against 10.1 dense; K = 16384, N = 96 (the text student's embed), 74 non-zero: 0.55 us against
# 29.6 dense and ~5 for the [N, K] sparse GEMV above
KN_BREAK_EVEN = 4
KN_LAYOUT = "kn"
KN_CHUNK = 16       # int32 lanes per accumulator vector
KN_BLOCK = 64       # bytes of x tested at once


def sparse_kn_fits(attrs, m: int, k: int, n: int) -> bool:
    """qdense with calibration evidence of a sparse input (``input_density``) whose expected
    non-zero count is at most K / KN_BREAK_EVEN, at most MAX_ROWS rows, K >= MIN_K and N <=
    KN_MAX_N: its weights are worth storing as [K, N] (``sparse_kn_qdense``)."""
    d = input_density(attrs)
    return (d is not None and m <= MAX_ROWS and k >= MIN_K and n <= KN_MAX_N
            and expected_nonzeros(d, k) <= k / KN_BREAK_EVEN)


def _kn_accumulate(xf, wf, acc, m: int, n: int, k: int) -> list:
    """TIR: acc[i, :] = sum over the non-zero x[i, k] of x[i, k] * w[k, :] (int32) for every row i:
    x is scanned 64 bytes at a time (``llvm.vector.reduce.or`` of eight 8-byte words), then the
    words of a block that is not all zero, and for each non-zero byte the row
    w[k, :] is added to the accumulators, KN_CHUNK int32 lanes at a time (the weight bytes
    widened, times the broadcast x value)."""
    chunks = [(c0, min(KN_CHUNK, n - c0)) for c0 in range(0, n, KN_CHUNK)]

    def vec(base, ln):
        return [tir.Ramp(base, 1, ln)] if ln > 1 else [base]

    def word(base):
        return tir.reinterpret("uint64", tir.BufferLoad(xf, [tir.Ramp(base, 1, 8)]))

    def add_row(i, pos, xv):
        out = []
        for c0, ln in chunks:
            idx = vec(i * n + c0, ln)
            wv = tir.Cast(f"int32x{ln}" if ln > 1 else "int32", tir.BufferLoad(wf, vec(pos * n + c0, ln)))
            out.append(tir.BufferStore(acc, tir.BufferLoad(acc, idx) + wv * (tir.Broadcast(xv, ln) if ln > 1 else xv),
                                       idx))
        return tir.SeqStmt(out) if len(out) > 1 else out[0]

    def visit(i, col):
        xv = tir.Var("xv", "int32")
        # (TVM 0.27: LetStmt binds for the statements that follow it in the sequence)
        return tir.SeqStmt([tir.LetStmt(xv, tir.Cast("int32", tir.BufferLoad(xf, [i * k + col]))),
                            tir.IfThenElse(xv != _i32(0), add_row(i, col, xv), None)])
    zero64 = tir.const(0, "uint64")
    stmts = []
    for i in range(m):
        stmts += [tir.BufferStore(acc, tir.Broadcast(_i32(0), ln) if ln > 1 else _i32(0), vec(_i32(i * n + c0), ln))
                  for c0, ln in chunks]
        def words(col0, count):         # the 8-byte words from col0: each tested, then its bytes
            out = []
            for q in range(count):
                kk = tir.Var(f"kk{q}", "int32")
                out.append(tir.IfThenElse(word(i * k + col0 + q * 8) != zero64,
                                          tir.For(kk, 0, 8, tir.ForKind.SERIAL, visit(i, col0 + q * 8 + kk)), None))
            return out
        nblk = k // KN_BLOCK
        if nblk:
            # 64 bytes per test: the OR of eight words (vector loads and one reduction)
            b = tir.Var("b", "int32")
            blk = tir.reinterpret("uint64x8", tir.BufferLoad(xf, [tir.Ramp(i * k + b * KN_BLOCK, 1, KN_BLOCK)]))
            any_nz = tir.call_llvm_pure_intrin("uint64", "llvm.vector.reduce.or", blk)
            stmts.append(tir.For(b, 0, nblk, tir.ForKind.SERIAL,
                                 tir.IfThenElse(any_nz != zero64, tir.SeqStmt(words(b * KN_BLOCK, KN_BLOCK // 8)),
                                                None)))
        done = nblk * KN_BLOCK
        if (k - done) // 8:
            stmts.extend(words(_i32(done), (k - done) // 8))
        done += (k - done) // 8 * 8
        if k > done:
            t = tir.Var("t", "int32")
            stmts.append(tir.For(t, 0, k - done, tir.ForKind.SERIAL, visit(i, done + t)))
    return stmts


def sparse_kn_qdense(spec):
    """The [K, N] sparse GEMV PrimFunc for a qdense spec whose weights are stored transposed
    (``w_layout`` == KN_LAYOUT, input 1 of shape [K, N]): the accumulation (``_kn_accumulate``)
    replaces the TE reduction ``acc``; the epilogue is quant.py's (per-channel tables, vectors
    of outputs)."""
    from tvm import te

    from .common import placeholder
    from .quant import _req_tables, _requant_node, with_tables
    a = spec.attrs
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    bias = placeholder(spec, 2, "bias") if has_bias else None
    m, k = (int(d) for d in x.shape)
    n = int(w.shape[1])
    tables = _req_tables(a, n)
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute((m, n), lambda i, j: te.sum(tir.Cast("int32", x[i, r]) * tir.Cast("int32", w[r, j]), axis=r),
                     name="acc")
    out = te.compute((m, n), lambda i, j: _requant_node(acc[i, j] if bias is None else (acc[i, j], bias[j]), a, j,
                                                        tables), name="out")

    schedule = kn_schedule(n, KN_CHUNK, lambda xf, wf, af: _kn_accumulate(xf, wf, af, m, n, k))
    return with_tables(spec, [x, w] + ([bias] if bias is not None else []), [out], schedule, tables)


def kn_schedule(n: int, chunk: int, accumulate):
    """The schedule of a [K, N] sparse GEMV (TE blocks ``acc`` and ``out``): the output in vectors
    of ``chunk`` lanes, and the reduction ``acc`` replaced by ``accumulate(xf, wf, af)``'s TIR
    statements on flat views of x, w and acc (this int8 one, sparse_dense.py's float32 one)."""
    from .quant_dw import _flat, _replace_loop

    def schedule(sch, spec) -> None:
        b_acc, b_out = sch.get_sblock("acc"), sch.get_sblock("out")
        ol = sch.get_loops(b_out)
        if n >= chunk:
            _, v = sch.split(ol[-1], [None, chunk])
            sch.vectorize(v)
        x_buf, w_buf = (rg.source for rg in sch.get(b_acc).reads[:2])
        acc_buf = sch.get(b_acc).writes[0].source
        xf, dx = _flat(x_buf, "xf")
        wf, dw = _flat(w_buf, "wf")
        af, da = _flat(acc_buf, "accf")
        body = tir.SeqStmt([dx, dw, da] + accumulate(xf, wf, af))
        _replace_loop(sch, sch.get_loops(b_acc)[0], body, [x_buf, w_buf], [acc_buf], "kn_acc")
    return schedule


def _llvm_hosted(target) -> bool:
    """Hosted LLVM targets only: the scan's 8-byte vector loads have no C form (a bare-metal
    target may be built with emit "c", which the kernel generator cannot see)."""
    return bool(getattr(target, "hosted", False)) and str((target.tvm or {}).get("kind", "llvm")) == "llvm"


def sparse_qdense(spec):
    """The sparse GEMV PrimFunc for a ``qdense`` spec when ``sparse_gemv_fits``, else None
    (``quant.qdense`` then chooses among its dense schedules)."""
    ins = spec.inputs
    if len(ins) < 2 or ins[0] is None or ins[1] is None or len(ins[0].shape) != 2 or ins[1].dtype != "int8":
        return None
    m, k = (int(d) for d in ins[0].shape)
    if not sparse_gemv_fits(spec.attrs, m, k) or not _llvm_hosted(spec.target):
        return None
    # quant imports this module lazily: no import cycle
    from .quant import _qdense_kernel, _req_tables, _requant_node
    a = spec.attrs
    n = int(ins[1].shape[0])
    has_bias = len(ins) > 2 and ins[2] is not None
    tables = _req_tables(a, n)

    def dense_epi(acc, bias_j, j):          # exactly quant.qdense's epilogue
        return _requant_node(acc if bias_j is None else (acc, bias_j), a, j, tables)

    def sparse_epi(acc, bias_j, j):         # the same values; the tables live in the dense body
        return _requant_node(acc if bias_j is None else (acc, bias_j), a, j)
    return sparse_gemv(_qdense_kernel(spec, dense_epi, tables), m, n, k, has_bias, sparse_epi)


__all__ = ["sparse_gemv", "sparse_gemv_fits", "sparse_qdense", "kn_schedule", "index_list", "CAP16", "CAP32", "BREAK_EVEN", "MIN_K",
           "MAX_ROWS", "sparse_kn_fits", "sparse_kn_qdense", "KN_LAYOUT", "KN_BREAK_EVEN"]
