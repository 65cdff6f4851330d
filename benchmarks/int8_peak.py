"""int8 multiply-accumulate peak of this machine, one thread (microbenchmark).

    python benchmarks/int8_peak.py [--seconds 0.003] [--repeats 300] [--json peak.json]

Compiles a tiny C program with gcc (AVX-512 VNNI / AVX2 intrinsics) into a shared library and
times, on one core, long chains of independent register-only instructions:

- ``vpdpbusd zmm`` (AVX-512 VNNI): 64 u8 x s8 products summed into 16 int32 lanes = 64 MACs;
- ``vpdpbusd ymm`` (AVX-VNNI encoding of the EVEX form, 256-bit): 32 MACs;
- AVX2 ``vpmaddwd ymm`` + ``vpaddd ymm`` (the exact u8 x s8 path of edgec's AVX2 kernels, after
  ``vpmovzxbw``): 16 int16 products = 16 MACs per pair;
- ``vfmadd231ps zmm`` for reference (16 fp32 FMAs).

12 independent accumulators hide the latency, so the loop measures issue throughput. It prints
instructions per second, per cycle of the nominal frequency read from /proc/cpuinfo ("cpu MHz";
on a VM the host's nominal clock: the core may run faster, so per-cycle figures above the
architectural rate mean a boost clock), and GOPS (2 ops per MAC).
Wall-clock times (CPU time under-counts on this VM); on a shared machine the best of many short runs
(3 ms each) is the
figure (the median is shown too).

Zen 4 (the machine of the figures in docs): AVX-512 is executed as two 256-bit halves; the
vector integer multiply pipes (2 of the 4 FP/vector pipes take vpdpbusd/vpmaddwd) give one
512-bit vpdpbusd per cycle = 64 MACs/cycle = 128 int8 ops/cycle per core; the measurement
confirms or refutes that for the machine at hand.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

C_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>

/* distinct initial values: otherwise the compiler merges the identical chains into one */
#define ACC12(T, init) T a0 = init(0), a1 = init(1), a2 = init(2), a3 = init(3), a4 = init(4), a5 = init(5), \
                         a6 = init(6), a7 = init(7), a8 = init(8), a9 = init(9), a10 = init(10), a11 = init(11)
#define SUM12(f) f(f(f(f(a0, a1), f(a2, a3)), f(f(a4, a5), f(a6, a7))), f(f(a8, a9), f(a10, a11)))

__attribute__((target("avx512f,avx512bw,avx512vnni")))
int64_t vnni512(int64_t iters) {
    __m512i x = _mm512_set1_epi32(0x01020304), y = _mm512_set1_epi32(0x05060708);
    ACC12(__m512i, _mm512_set1_epi32);
    for (int64_t i = 0; i < iters; i++) {
        __asm__ volatile("" : "+v"(x), "+v"(y));
#define D(a) a = _mm512_dpbusd_epi32(a, x, y)
        D(a0); D(a1); D(a2); D(a3); D(a4); D(a5); D(a6); D(a7); D(a8); D(a9); D(a10); D(a11);
#undef D
    }
    __m512i s = SUM12(_mm512_add_epi32);
    return _mm512_reduce_add_epi32(s);
}

__attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni")))
int64_t vnni256(int64_t iters) {
    __m256i x = _mm256_set1_epi32(0x01020304), y = _mm256_set1_epi32(0x05060708);
    ACC12(__m256i, _mm256_set1_epi32);
    for (int64_t i = 0; i < iters; i++) {
        __asm__ volatile("" : "+v"(x), "+v"(y));
#define D(a) a = _mm256_dpbusd_epi32(a, x, y)
        D(a0); D(a1); D(a2); D(a3); D(a4); D(a5); D(a6); D(a7); D(a8); D(a9); D(a10); D(a11);
#undef D
    }
    __m256i s = SUM12(_mm256_add_epi32);
    int32_t o[8]; _mm256_storeu_si256((__m256i*)o, s);
    return o[0] + o[7];
}

__attribute__((target("avx2")))
int64_t avx2_maddwd(int64_t iters) {
    __m256i x = _mm256_set1_epi32(0x00030004), y = _mm256_set1_epi32(0x00050006);
    ACC12(__m256i, _mm256_set1_epi32);
    for (int64_t i = 0; i < iters; i++) {
        __asm__ volatile("" : "+x"(x), "+x"(y));
/* vpmaddwd in volatile asm: one per accumulator (the compiler would merge identical ones) */
#define D(a) do { __m256i t; __asm__ volatile("vpmaddwd %2, %1, %0" : "=x"(t) : "x"(x), "x"(y)); \
                  a = _mm256_add_epi32(a, t); } while (0)
        D(a0); D(a1); D(a2); D(a3); D(a4); D(a5); D(a6); D(a7); D(a8); D(a9); D(a10); D(a11);
#undef D
    }
    __m256i s = SUM12(_mm256_add_epi32);
    int32_t o[8]; _mm256_storeu_si256((__m256i*)o, s);
    return o[0] + o[7];
}

__attribute__((target("avx512f")))
int64_t fma512(int64_t iters) {
    __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
#define F1(i) _mm512_set1_ps((float)(i))
    ACC12(__m512, F1);
    for (int64_t i = 0; i < iters; i++) {
        __asm__ volatile("" : "+v"(x), "+v"(y));
#define D(a) a = _mm512_fmadd_ps(x, y, a)
        D(a0); D(a1); D(a2); D(a3); D(a4); D(a5); D(a6); D(a7); D(a8); D(a9); D(a10); D(a11);
#undef D
    }
    __m512 s = SUM12(_mm512_add_ps);
    return (int64_t)_mm512_reduce_add_ps(s);
}
"""

# name, MACs (multiply-accumulates) per instruction (per vpmaddwd+vpaddd pair for AVX2)
KERNELS = [("vnni512", 64, "vpdpbusd zmm (u8 x s8 -> i32)"),
           ("vnni256", 32, "vpdpbusd ymm"),
           ("avx2_maddwd", 16, "vpmaddwd + vpaddd ymm (AVX2 exact path)"),
           ("fma512", 16, "vfmadd231ps zmm (fp32, for reference)")]
INSNS_PER_ITER = 12


def cpu_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1])
    except OSError:
        pass
    return None


def build(workdir: Path) -> ctypes.CDLL:
    src = workdir / "peak.c"
    lib = workdir / "peak.so"
    src.write_text(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return ctypes.CDLL(str(lib))


def measure(fn, seconds: float, repeats: int) -> list[float]:
    """Instructions per second of each repeat."""
    fn.argtypes = [ctypes.c_int64]
    fn.restype = ctypes.c_int64
    iters = 1000
    while True:   # calibrate to about `seconds` per run
        t0 = time.perf_counter()
        fn(iters)
        dt = time.perf_counter() - t0
        if dt > seconds / 4:
            break
        iters *= 4
    iters = max(1, int(iters * seconds / dt))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(iters)
        dt = time.perf_counter() - t0
        rates.append(iters * INSNS_PER_ITER / dt)
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.003)
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--json", default=None, help="also write the figures (and the int8 peak: the best int8 "
                                                 "instruction this CPU has) as JSON")
    a = ap.parse_args(argv)
    figures = {}
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = cpu_mhz()
    print(f"nominal clock: {mhz} MHz (from /proc/cpuinfo)" if mhz else "nominal clock: unknown")
    with tempfile.TemporaryDirectory() as d:
        lib = build(Path(d))
        for name, macs, label in KERNELS:
            if name.startswith("vnni") and "avx512_vnni" not in flags:
                print(f"{label}: skipped (no avx512_vnni)")
                continue
            rates = measure(getattr(lib, name), a.seconds, a.repeats)
            best, med = max(rates), statistics.median(rates)
            ipc = f", {best / (mhz * 1e6):.2f} per cycle at the nominal clock" if mhz else ""
            print(f"{label}: best {best / 1e9:.2f} G instr/s{ipc}; "
                  f"{2 * macs * best / 1e9:.0f} GOPS best, {2 * macs * med / 1e9:.0f} GOPS median")
            figures[name] = {"label": label, "macs_per_instruction": macs, "gops_best": round(2 * macs * best / 1e9, 1),
                             "gops_median": round(2 * macs * med / 1e9, 1)}
    if a.json:
        import json
        int8 = {k: v for k, v in figures.items() if not k.startswith("fma")}
        top = max(int8.items(), key=lambda kv: kv[1]["gops_best"]) if int8 else None
        out = {"mhz": mhz, "kernels": figures,
               "peak_gops_1thread": top[1]["gops_best"] if top else None,
               "how": (f"{top[1]['label']}: best of {a.repeats} runs of {a.seconds * 1e3:g} ms of independent "
                       f"register-only instructions, one thread (benchmarks/int8_peak.py)") if top else ""}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
