/* Native CPU selective scan of mambast (forward + backward), see docs/native-scan.md.
 *
 * Semantics: docs/selective-scan.md. Per (b, d, n), with dt = softplus(delta + bias):
 *     h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t,     y_t = sum_n C_t h_t + D u_t.
 *
 * Design:
 *   - VL channels of one B/C group sit in the VL lanes of a vector (VL = 16 with AVX-512, else 8), written
 *     with GCC vector extensions (plus AVX-512 intrinsics for the exp where available);
 *   - one task = (batch, block of VL channels); tasks are spread over OpenMP threads;
 *   - sequential over t with the N state vectors h[n] in registers; the L axis is cut into chunks of
 *     MST_CHUNK steps; per chunk, the (channel, time) tiles of u, delta, dout are transposed into a
 *     channel-last scratch buffer (T x VL), and the outputs are transposed back;
 *   - forward stores h at every chunk end when a backward will follow (O(B D N L / MST_CHUNK) floats);
 *   - backward walks the chunks from last to first: recompute the chunk from its checkpoint (storing h_t
 *     and exp(dt_t A)), then run the reverse scan g_t = a_{t+1} g_{t+1} + dout_t C_t.
 *   - dB / dC (reduced over the channels of a group) go to per-thread accumulators laid out (B, G, L, N),
 *     summed in thread order at the end (deterministic for a fixed thread count).
 * All arithmetic is float32; denormals are flushed inside the kernel (MXCSR restored on exit).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MST_X86 1
#endif

#if defined(__AVX512F__)
#define VL 16
#else
#define VL 8
#endif
#define MST_CHUNK 64
#define MST_NMAX 64
#define LOG2E 1.44269504088896341f

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
typedef uint32_t vu __attribute__((vector_size(VL * 4)));

#define INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------------------------------------------ */
/* parameters shared by forward and backward (mirrored by a ctypes.Structure in scan_cpu.py)         */

typedef struct {
    const float *u;       /* (Bsz, D, L), element strides su_b, su_d, su_t */
    const float *delta;   /* (Bsz, D, L), strides sd_b, sd_d, sd_t */
    const float *A;       /* (D, N) contiguous */
    const float *Bt;      /* (Bsz, G, L, N) contiguous (B transposed) */
    const float *Ct;      /* (Bsz, G, L, N) contiguous */
    const float *Dskip;   /* (D,) or NULL */
    const float *bias;    /* (D,) or NULL */
    float *ckpt;          /* (Bsz, nblk, nchunk, N, VL) or NULL */
    int64_t su_b, su_d, su_t, sd_b, sd_d, sd_t;
    int64_t Bsz, D, L, N, G;
    int64_t softplus;
    int64_t nthreads;
    /* low-rank delta (forward only): when dtw is set, delta is not read; instead, for channel d of group g,
     * delta[b, d, t] = sum_r dtw[d, r] dtl[b, g, r, t] is computed in the kernel */
    const float *dtw;     /* (D, R) contiguous, or NULL */
    const float *dtl;     /* (Bsz, G, R, L) contiguous */
    int64_t R;
} mst_params;

typedef struct {
    float *out;           /* (Bsz, D, L) contiguous */
    float *last;          /* (Bsz, D, N) contiguous, or NULL */
} mst_fwd_out;

typedef struct {
    const float *dout;    /* (Bsz, D, L), strides so_b, so_d, so_t */
    int64_t so_b, so_d, so_t;
    float *du;            /* (Bsz, D, L) contiguous */
    float *ddelta;        /* (Bsz, D, L) contiguous */
    float *dA;            /* (Bsz, D, N): per-batch partial sums */
    float *dD;            /* (Bsz, D) per-batch partial sums, or NULL */
    float *dbias;         /* (Bsz, D) per-batch partial sums, or NULL */
    float *dBt;           /* (Bsz, G, L, N), written (not accumulated) */
    float *dCt;           /* (Bsz, G, L, N) */
} mst_bwd_io;

/* ------------------------------------------------------------------------------------------------ */
/* vector math                                                                                      */

INLINE vf vbcast(float s) { return (vf){0} + s; }

INLINE vf vselect(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

INLINE vf vmax(vf a, vf b) { return vselect(a > b, a, b); }

/* 2^t for t <= 0 (NaN propagates), relative error < 2e-7 over the normal range; tiny results flush to
 * 0 (AVX-512) or to ~1e-38 (portable path), both negligible as factors of the state. t = -inf (a float
 * overflow of dt * A) is only handled by the portable path. */
INLINE vf vexp2_neg(vf t)
{
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    /* f = t - floor(t) in one instruction (vreduceps), 2^f by a degree-6 minimax polynomial on [0, 1)
     * (relative error 9e-8 in float32), and vscalefps multiplies by 2^floor(t) itself */
    const float d1 = 6.931470444e-01f, d2 = 2.402293056e-01f, d3 = 5.548528034e-02f;
    const float d4 = 9.675452131e-03f, d5 = 1.246784119e-03f, d6 = 2.161293338e-04f;
    const __m512 x = (__m512)t;
    const vf f = (vf)_mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const vf p = ((((((d6 * f + d5) * f + d4) * f + d3) * f + d2) * f + d1) * f) + 1.f;
    return (vf)_mm512_scalef_ps((__m512)p, x);
#else
    /* k = round(t), 2^(t - k) by a degree-6 minimax polynomial on [-1/2, 1/2], times 2^k */
    const float c1 = 6.931472029e-01f, c2 = 2.402264791e-01f, c3 = 5.550332464e-02f;
    const float c4 = 9.618437393e-03f, c5 = 1.339887676e-03f, c6 = 1.535335780e-04f;
#if defined(__AVX512F__)
    __m512 x = _mm512_max_ps((__m512)t, _mm512_set1_ps(-160.f));
    __m512 k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf f = (vf)x - (vf)k;
    vf p = ((((((c6 * f + c5) * f + c4) * f + c3) * f + c2) * f + c1) * f) + 1.f;
    return (vf)_mm512_scalef_ps((__m512)p, k);
#else
    const float magic = 12582912.f; /* 1.5 * 2^23: adding it rounds to an integer kept in the low bits */
    t = vmax(t, vbcast(-126.f));
    vf kf = t + magic;
    vf k = kf - magic;
    vf f = t - k;
    vf p = ((((((c6 * f + c5) * f + c4) * f + c3) * f + c2) * f + c1) * f) + 1.f;
    vu e = ((vu)kf + 127u) << 23; /* (0x4B400000 + k + 127) << 23 == (k + 127) << 23 mod 2^32 */
    return p * (vf)e;
#endif
#endif
}

/* log(1 + y) for y in [0, 1] (cephes logf polynomial on the reduced argument). */
INLINE vf vlog1p_01(vf y)
{
    vi big = (y + 1.f) >= 1.41421356f;
    vf x = vselect(big, (y - 1.f) * 0.5f, y); /* 1 + x = (1 + y) / 2^e, e = 1 if big else 0 */
    vf e = vselect(big, vbcast(1.f), vbcast(0.f));
    vf z = x * x;
    vf p = 7.0376836292e-2f * x - 1.1514610310e-1f;
    p = p * x + 1.1676998740e-1f;
    p = p * x - 1.2420140846e-1f;
    p = p * x + 1.4249322787e-1f;
    p = p * x - 1.6668057665e-1f;
    p = p * x + 2.0000714765e-1f;
    p = p * x - 2.4999993993e-1f;
    p = p * x + 3.3333331174e-1f;
    vf r = p * x * z;
    r += -2.12194440e-4f * e;
    r += -0.5f * z;
    return (x + r) + 0.693359375f * e;
}

INLINE vf vabs(vf x) { return (vf)((vu)x & 0x7fffffffu); }

/* ------------------------------------------------------------------------------------------------ */
/* lane reductions: out[n] = sum over lanes of v[n], n < N                                          */

#if defined(__GNUC__) && !defined(__clang__)
#define MST_TREE 1
#if VL == 16
#define BITREV(i) ((((i) & 1) << 3) | (((i) & 2) << 1) | (((i) & 4) >> 1) | (((i) & 8) >> 3))
#define RED_STEP(x, y, lo, hi) (__builtin_shuffle((x), (y), (lo)) + __builtin_shuffle((x), (y), (hi)))
/* VL vectors -> one vector of their VL lane sums (transpose-and-add tree, inputs in bit-reversed order) */
INLINE vf reduce_block(const vf *v)
{
    const vi l1 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const vi h1 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
    const vi l2 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
    const vi h2 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
    const vi l3 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
    const vi h3 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
    const vi l4 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
    const vi h4 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
    vf w1[8], w2[4], w3[2];
    for (int i = 0; i < 8; i++)
        w1[i] = RED_STEP(v[BITREV(2 * i)], v[BITREV(2 * i + 1)], l1, h1);
    for (int i = 0; i < 4; i++)
        w2[i] = RED_STEP(w1[2 * i], w1[2 * i + 1], l2, h2);
    for (int i = 0; i < 2; i++)
        w3[i] = RED_STEP(w2[2 * i], w2[2 * i + 1], l3, h3);
    return RED_STEP(w3[0], w3[1], l4, h4);
}
#else /* VL == 8 */
#define BITREV(i) ((((i) & 1) << 2) | ((i) & 2) | (((i) & 4) >> 2))
#define RED_STEP(x, y, lo, hi) (__builtin_shuffle((x), (y), (lo)) + __builtin_shuffle((x), (y), (hi)))
INLINE vf reduce_block(const vf *v)
{
    const vi l1 = {0, 1, 2, 3, 8, 9, 10, 11}, h1 = {4, 5, 6, 7, 12, 13, 14, 15};
    const vi l2 = {0, 1, 8, 9, 4, 5, 12, 13}, h2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const vi l3 = {0, 8, 2, 10, 4, 12, 6, 14}, h3 = {1, 9, 3, 11, 5, 13, 7, 15};
    vf w1[4], w2[2];
    for (int i = 0; i < 4; i++)
        w1[i] = RED_STEP(v[BITREV(2 * i)], v[BITREV(2 * i + 1)], l1, h1);
    for (int i = 0; i < 2; i++)
        w2[i] = RED_STEP(w1[2 * i], w1[2 * i + 1], l2, h2);
    return RED_STEP(w2[0], w2[1], l3, h3);
}
#endif
#endif

/* acc[n] += sum over lanes of v[n] */
INLINE void reduce_add(float *restrict acc, const vf *v, const int N)
{
    int n = 0;
#ifdef MST_TREE
    for (; n + VL <= N; n += VL) {
        vf a;
        memcpy(&a, acc + n, sizeof a);
        a += reduce_block(v + n);
        memcpy(acc + n, &a, sizeof a);
    }
#endif
    for (; n < N; n++) {
        float s = 0.f;
        for (int k = 0; k < VL; k++)
            s += v[n][k];
        acc[n] += s;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* tiles: (channel, time) rows <-> channel-last scratch (T x VL)                                     */

#ifdef MST_TREE
/* in-register transpose of a VL x VL tile: r[i][j] <- r[j][i] (recursive block swap, log2(VL) stages) */
INLINE void transpose_block(vf *r)
{
#if VL == 16
    const vi lo[4] = {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
                      {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
                      {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
                      {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}};
    const vi hi[4] = {{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
                      {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
                      {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
                      {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}};
#else
    const vi lo[3] = {{0, 1, 2, 3, 8, 9, 10, 11}, {0, 1, 8, 9, 4, 5, 12, 13}, {0, 8, 2, 10, 4, 12, 6, 14}};
    const vi hi[3] = {{4, 5, 6, 7, 12, 13, 14, 15}, {2, 3, 10, 11, 6, 7, 14, 15}, {1, 9, 3, 11, 5, 13, 7, 15}};
#endif
#pragma GCC unroll 4
    for (int stage = 0; (VL >> (stage + 1)) >= 1; stage++) {
        const int b = VL >> (stage + 1);
#pragma GCC unroll 8
        for (int q = 0; q < VL / 2; q++) {
            const int i = (q / b) * 2 * b + q % b; /* rows i and i + b are swapped blockwise */
            const vf x = r[i], y = r[i + b];
            r[i] = __builtin_shuffle(x, y, lo[stage]);
            r[i + b] = __builtin_shuffle(x, y, hi[stage]);
        }
    }
}
#endif

/* dst[t][c] = src[c * sc + t * st] for c < nc, 0 for the padding lanes */
static void load_tile(vf *restrict dst, const float *src, int64_t sc, int64_t st, int nc, int T)
{
    float *d = (float *)dst;
    int t0 = 0;
#ifdef MST_TREE
    if (st == 1 && nc == VL) {
        for (; t0 + VL <= T; t0 += VL) {
            vf r[VL];
#pragma GCC unroll 16
            for (int c = 0; c < VL; c++)
                memcpy(&r[c], src + c * sc + t0, sizeof(vf));
            transpose_block(r);
#pragma GCC unroll 16
            for (int c = 0; c < VL; c++)
                dst[t0 + c] = r[c];
        }
        if (t0 == T)
            return;
    }
#endif
    if (nc < VL)
        memset(d, 0, sizeof(vf) * (size_t)T);
    if (st == 1) {
        for (int c = 0; c < nc; c++) {
            const float *row = src + c * sc;
            for (int t = t0; t < T; t++)
                d[t * VL + c] = row[t];
        }
    } else {
        for (int c = 0; c < nc; c++) {
            const float *row = src + c * sc;
            for (int t = 0; t < T; t++)
                d[t * VL + c] = row[t * st];
        }
    }
}

/* ask for the cache lines of a (channel, time) tile that will be loaded next (contiguous rows only) */
static void prefetch_tile(const float *src, int64_t sc, int64_t st, int nc, int T)
{
    if (st != 1)
        return;
    for (int c = 0; c < nc; c++)
        for (int t = 0; t < T; t += 64 / (int)sizeof(float))
            __builtin_prefetch(src + c * sc + t, 0, 2);
}

/* dst[c * L + t] = src[t][c] for c < nc (dst rows contiguous in t) */
static void store_tile(float *dst, int64_t sc, const vf *restrict src, int nc, int T)
{
    const float *s = (const float *)src;
    int t0 = 0;
#ifdef MST_TREE
    if (nc == VL) {
        for (; t0 + VL <= T; t0 += VL) {
            vf r[VL];
#pragma GCC unroll 16
            for (int c = 0; c < VL; c++)
                r[c] = src[t0 + c];
            transpose_block(r);
#pragma GCC unroll 16
            for (int c = 0; c < VL; c++)
                memcpy(dst + c * sc + t0, &r[c], sizeof(vf));
        }
    }
#endif
    for (int c = 0; c < nc; c++) {
        float *row = dst + c * sc;
        for (int t = t0; t < T; t++)
            row[t] = s[t * VL + c];
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* per-task geometry                                                                                 */

typedef struct {
    int64_t b, g, d0, nc, blk;
} mst_task;

INLINE int64_t blocks_per_group(const mst_params *p) { return (p->D / p->G + VL - 1) / VL; }

INLINE mst_task task_of(const mst_params *p, int64_t i)
{
    int64_t nbg = blocks_per_group(p), nblk = nbg * p->G, dg = p->D / p->G;
    mst_task k;
    k.b = i / nblk;
    k.blk = i % nblk;
    k.g = k.blk / nbg;
    int64_t j = k.blk % nbg;
    k.d0 = k.g * dg + j * VL;
    k.nc = dg - j * VL < VL ? dg - j * VL : VL;
    return k;
}

/* per-lane copy of a (D,) vector, zero in the padding lanes */
INLINE vf load_lanes(const float *x, const mst_task *k, float scale)
{
    vf v = vbcast(0.f);
    if (x)
        for (int c = 0; c < k->nc; c++)
            v[c] = x[k->d0 + c] * scale;
    return v;
}

/* Av[n] lanes = A[d0 + c, n] * scale */
INLINE void load_A(vf *Av, const mst_params *p, const mst_task *k, const int N, float scale)
{
    for (int n = 0; n < N; n++) {
        Av[n] = vbcast(0.f);
        for (int c = 0; c < k->nc; c++)
            Av[n][c] = p->A[(k->d0 + c) * N + n] * scale;
    }
}

/* dts[t] = sum_r Wv[r] dtl[r][t] for t < T (dtl rows of length L): the low-rank delta of one chunk, with
 * blocks of 8 time steps accumulated in registers */
INLINE void lowrank_delta(vf *restrict dts, const vf *restrict Wv, const float *dtl, int64_t L, int R, int T)
{
    int t = 0;
    for (; t + 8 <= T; t += 8) {
        vf acc[8] = {0};
        for (int r = 0; r < R; r++) {
            const vf w = Wv[r];
            const float *row = dtl + r * L + t;
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                acc[j] += w * row[j];
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            dts[t + j] = acc[j];
    }
    for (; t < T; t++) {
        vf acc = vbcast(0.f);
        for (int r = 0; r < R; r++)
            acc += Wv[r] * dtl[r * L + t];
        dts[t] = acc;
    }
}

/* stage u and dt (and, when `sg` is given, d dt / d(delta + bias) and whether delta + bias > 20) of the
 * chunk [t0, t0 + T); prefetch the chunk that starts at `next` (if >= 0) */
INLINE void stage_inputs(const mst_params *p, const mst_task *k, int64_t t0, int T, int64_t next, vf bias,
                         vf *us, vf *dts, vf *sg, const vf *Wv)
{
    if (next >= 0) {
        const int Tn = (int)(p->L - next < MST_CHUNK ? p->L - next : MST_CHUNK);
        prefetch_tile(p->u + k->b * p->su_b + k->d0 * p->su_d + next * p->su_t, p->su_d, p->su_t, (int)k->nc, Tn);
        if (!Wv)
            prefetch_tile(p->delta + k->b * p->sd_b + k->d0 * p->sd_d + next * p->sd_t, p->sd_d, p->sd_t,
                          (int)k->nc, Tn);
    }
    load_tile(us, p->u + k->b * p->su_b + k->d0 * p->su_d + t0 * p->su_t, p->su_d, p->su_t, (int)k->nc, T);
    if (Wv)
        lowrank_delta(dts, Wv, p->dtl + (k->b * p->G + k->g) * p->R * p->L + t0, p->L, (int)p->R, T);
    else
        load_tile(dts, p->delta + k->b * p->sd_b + k->d0 * p->sd_d + t0 * p->sd_t, p->sd_d, p->sd_t,
                  (int)k->nc, T);
    for (int t = 0; t < T; t++) {
        const vf x = dts[t] + bias;
        if (!p->softplus) {
            dts[t] = x;
            if (sg)
                sg[t] = vbcast(1.f);
            continue;
        }
        /* softplus(x) = max(x, 0) + log1p(e), sigmoid(x) = 1 / (1 + e) or e / (1 + e), e = exp(-|x|);
         * above torch's threshold 20: x and 1 */
        const vf e = vexp2_neg(-vabs(x) * LOG2E);
        const vi big = x > 20.f;
        dts[t] = vselect(big, x, vmax(x, vbcast(0.f)) + vlog1p_01(e));
        if (sg) {
            const vf inv = 1.f / (1.f + e);
            sg[t] = vselect(big, vbcast(1.f), vselect(x >= 0.f, inv, e * inv));
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* forward                                                                                           */

INLINE void fwd_task(const mst_params *p, const mst_fwd_out *o, int64_t i, vf *scratch, const int N)
{
    const mst_task k = task_of(p, i);
    const int64_t L = p->L, nch = (L + MST_CHUNK - 1) / MST_CHUNK;
    vf *us = scratch, *dts = us + MST_CHUNK, *ys = dts + MST_CHUNK, *Wv = p->dtw ? ys + MST_CHUNK : NULL;
    vf A2[MST_NMAX], h[MST_NMAX];
    if (Wv)
        for (int r = 0; r < p->R; r++) {
            Wv[r] = vbcast(0.f);
            for (int c = 0; c < k.nc; c++)
                Wv[r][c] = p->dtw[(k.d0 + c) * p->R + r];
        }
    load_A(A2, p, &k, N, LOG2E);
    const vf Dv = load_lanes(p->Dskip, &k, 1.f), bias = load_lanes(p->bias, &k, 1.f);
    for (int n = 0; n < N; n++)
        h[n] = vbcast(0.f);
    const float *Bg = p->Bt + (k.b * p->G + k.g) * L * N, *Cg = p->Ct + (k.b * p->G + k.g) * L * N;
    for (int64_t ci = 0; ci < nch; ci++) {
        const int64_t t0 = ci * MST_CHUNK;
        const int T = (int)(L - t0 < MST_CHUNK ? L - t0 : MST_CHUNK);
        stage_inputs(p, &k, t0, T, ci + 1 < nch ? t0 + MST_CHUNK : -1, bias, us, dts, NULL, Wv);
        const float *Bc = Bg + t0 * N, *Cc = Cg + t0 * N;
        for (int t = 0; t < T; t++) {
            const vf dt = dts[t], dtu = dt * us[t];
            vf y = Dv * us[t];
#pragma GCC unroll 16
            for (int n = 0; n < N; n++) {
                const vf a = vexp2_neg(dt * A2[n]);
                h[n] = a * h[n] + dtu * Bc[t * N + n];
                y += h[n] * Cc[t * N + n];
            }
            ys[t] = y;
        }
        store_tile(o->out + (k.b * p->D + k.d0) * L + t0, L, ys, (int)k.nc, T);
        if (p->ckpt && ci + 1 < nch) {
            memcpy(p->ckpt + ((i * nch) + ci) * N * VL, h, sizeof(vf) * (size_t)N);
        }
    }
    if (o->last)
        for (int c = 0; c < k.nc; c++)
            for (int n = 0; n < N; n++)
                o->last[(k.b * p->D + k.d0 + c) * N + n] = h[n][c];
}

/* ------------------------------------------------------------------------------------------------ */
/* backward                                                                                          */

typedef struct {
    vf *us, *dts, *sg, *dos, *dus, *dds; /* T vectors each (sg: d dt / d delta) */
    vf *hs, *as;                         /* (T + 1) * N and T * N vectors: hs[t + 1] = h_t, hs[0] = h_{t0-1} */
    vf *pb, *pc;                         /* N vectors each: per-lane dB, dC terms of one step */
} bwd_scratch;

/* recompute one chunk from its starting state h: hs[t + 1][n] = h_t, as[t][n] = exp(dt_t A) */
INLINE void bwd_recompute(const bwd_scratch *s, vf *h, const vf *A2, const float *Bc, int T, const int N)
{
    for (int n = 0; n < N; n++)
        s->hs[n] = h[n];
    for (int t = 0; t < T; t++) {
        const vf dt = s->dts[t], dtu = dt * s->us[t];
#pragma GCC unroll 16
        for (int n = 0; n < N; n++) {
            const vf a = vexp2_neg(dt * A2[n]);
            h[n] = a * h[n] + dtu * Bc[t * N + n];
            s->hs[(t + 1) * N + n] = h[n];
            s->as[t * N + n] = a;
        }
    }
}

/* reverse scan over one chunk; g[n] carries a_{t+1} g_{t+1} in and out */
INLINE void bwd_reverse(const bwd_scratch *s, vf *g, vf *dAacc, const vf *Av,
                        const float *Bc, const float *Cc, float *accB, float *accC, vf Dv, int T,
                        const int N)
{
    for (int t = T - 1; t >= 0; t--) {
        const vf dt = s->dts[t], uu = s->us[t], dtu = dt * uu, dout = s->dos[t];
        vf gB = vbcast(0.f), ghA = vbcast(0.f);
#pragma GCC unroll 16
        for (int n = 0; n < N; n++) {
            const float Bn = Bc[t * N + n], Cn = Cc[t * N + n];
            const vf gn = g[n] + dout * Cn, hv = s->hs[(t + 1) * N + n], an = s->as[t * N + n];
            s->pc[n] = dout * hv;
            s->pb[n] = gn * dtu;
            gB += gn * Bn;
            const vf gh = gn * (an * s->hs[t * N + n]); /* g_t a_t h_{t-1} */
            ghA += gh * Av[n];
            dAacc[n] += gh * dt;
            g[n] = an * gn;
        }
#ifndef MST_NO_REDUCE
        reduce_add(accB + t * N, s->pb, N);
        reduce_add(accC + t * N, s->pc, N);
#endif
        s->dus[t] = Dv * dout + dt * gB;
        s->dds[t] = (uu * gB + ghA) * s->sg[t];
    }
}

INLINE void bwd_task(const mst_params *p, const mst_bwd_io *io, int64_t i, const bwd_scratch *s, float *accB,
                     float *accC, int64_t shift, const int N)
{
    const mst_task k = task_of(p, i);
    const int64_t L = p->L, nch = (L + MST_CHUNK - 1) / MST_CHUNK;
    vf A2[MST_NMAX], Av[MST_NMAX], h[MST_NMAX], g[MST_NMAX], dAacc[MST_NMAX];
    load_A(A2, p, &k, N, LOG2E);
    load_A(Av, p, &k, N, 1.f);
    const vf Dv = load_lanes(p->Dskip, &k, 1.f), bias = load_lanes(p->bias, &k, 1.f);
    vf dDacc = vbcast(0.f), dbacc = vbcast(0.f);
    for (int n = 0; n < N; n++)
        g[n] = dAacc[n] = vbcast(0.f);
    const int64_t goff = (k.b * p->G + k.g) * L * N, aoff = goff - shift; /* accumulators start at `shift` */
    for (int64_t ci = nch - 1; ci >= 0; ci--) {
        const int64_t t0 = ci * MST_CHUNK;
        const int T = (int)(L - t0 < MST_CHUNK ? L - t0 : MST_CHUNK);
        stage_inputs(p, &k, t0, T, ci > 0 ? t0 - MST_CHUNK : -1, bias, s->us, s->dts, s->sg, NULL);
        if (ci > 0)
            prefetch_tile(io->dout + k.b * io->so_b + k.d0 * io->so_d + (t0 - MST_CHUNK) * io->so_t, io->so_d,
                          io->so_t, (int)k.nc, MST_CHUNK);
        load_tile(s->dos, io->dout + k.b * io->so_b + k.d0 * io->so_d + t0 * io->so_t, io->so_d, io->so_t,
                  (int)k.nc, T);
        if (ci == 0) {
            for (int n = 0; n < N; n++)
                h[n] = vbcast(0.f);
        } else {
            memcpy(h, p->ckpt + ((i * nch) + ci - 1) * N * VL, sizeof(vf) * (size_t)N);
        }
        const float *Bc = p->Bt + goff + t0 * N, *Cc = p->Ct + goff + t0 * N;
        bwd_recompute(s, h, A2, Bc, T, N);
        bwd_reverse(s, g, dAacc, Av, Bc, Cc, accB + aoff + t0 * N, accC + aoff + t0 * N, Dv, T, N);
        for (int t = 0; t < T; t++) {
            dDacc += s->dos[t] * s->us[t];
            dbacc += s->dds[t];
        }
        store_tile(io->du + (k.b * p->D + k.d0) * L + t0, L, s->dus, (int)k.nc, T);
        store_tile(io->ddelta + (k.b * p->D + k.d0) * L + t0, L, s->dds, (int)k.nc, T);
    }
    for (int c = 0; c < k.nc; c++) {
        const int64_t d = k.b * p->D + k.d0 + c;
        for (int n = 0; n < N; n++)
            io->dA[d * N + n] = dAacc[n][c];
        if (io->dD)
            io->dD[d] = dDacc[c];
        if (io->dbias)
            io->dbias[d] = dbacc[c];
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* drivers                                                                                           */

#ifdef MST_X86
#define FTZ_ENTER() unsigned int mxcsr_saved = _mm_getcsr(); _mm_setcsr(mxcsr_saved | 0x8040)
#define FTZ_LEAVE() _mm_setcsr(mxcsr_saved)
#else
#define FTZ_ENTER() (void)0
#define FTZ_LEAVE() (void)0
#endif

static void *aligned_buffer(size_t bytes)
{
    void *ptr = NULL;
    if (posix_memalign(&ptr, 64, bytes ? bytes : 64))
        return NULL;
    return ptr;
}

int mst_vector_width(void) { return VL; }

int mst_chunk_size(void) { return MST_CHUNK; }

int mst_max_state(void) { return MST_NMAX; }

int64_t mst_num_blocks(int64_t D, int64_t G) { return G * ((D / G + VL - 1) / VL); }

static void fwd_generic(const mst_params *p, const mst_fwd_out *o, int64_t i, vf *s) { fwd_task(p, o, i, s, (int)p->N); }
static void fwd_n16(const mst_params *p, const mst_fwd_out *o, int64_t i, vf *s) { fwd_task(p, o, i, s, 16); }

/* returns 0 on success, 1 on allocation failure, 2 on bad arguments */
int mst_scan_fwd(const mst_params *p, const mst_fwd_out *o)
{
    if (p->N < 1 || p->N > MST_NMAX || p->G < 1 || p->D % p->G || (p->dtw && (p->R < 1 || !p->dtl)))
        return 2;
    const int64_t ntasks = p->Bsz * mst_num_blocks(p->D, p->G);
    int failed = 0;
#pragma omp parallel num_threads((int)p->nthreads)
    {
        FTZ_ENTER();
        vf *scratch = aligned_buffer(sizeof(vf) * (3 * MST_CHUNK + (size_t)(p->dtw ? p->R : 0)));
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(dynamic, 4)
            for (int64_t i = 0; i < ntasks; i++) {
                if (p->N == 16)
                    fwd_n16(p, o, i, scratch);
                else
                    fwd_generic(p, o, i, scratch);
            }
        }
        free(scratch);
        FTZ_LEAVE();
    }
    return failed;
}

static void bwd_generic(const mst_params *p, const mst_bwd_io *io, int64_t i, const bwd_scratch *s, float *aB,
                        float *aC, int64_t shift)
{
    bwd_task(p, io, i, s, aB, aC, shift, (int)p->N);
}

static void bwd_n16(const mst_params *p, const mst_bwd_io *io, int64_t i, const bwd_scratch *s, float *aB,
                    float *aC, int64_t shift)
{
    bwd_task(p, io, i, s, aB, aC, shift, 16);
}

/* The backward's tasks are cut into `nparts` contiguous parts, run dynamically over the threads; each part
 * accumulates dB / dC for the (batch, group) rows it touches in its own buffer (part 0: the output), and the
 * parts are summed in part order at the end: deterministic whatever thread ran what. */
typedef struct {
    int64_t i0, i1;   /* tasks [i0, i1) */
    int64_t row0, nrows; /* (batch * G + group) rows [row0, row0 + nrows) */
    float *aB, *aC;   /* (nrows, L, N) */
} bwd_part;

INLINE int64_t row_of(const mst_params *p, int64_t i)
{
    const mst_task k = task_of(p, i);
    return k.b * p->G + k.g;
}

int mst_scan_bwd(const mst_params *p, const mst_bwd_io *io)
{
    if (p->N < 1 || p->N > MST_NMAX || p->G < 1 || p->D % p->G || !p->ckpt || p->dtw)
        return 2; /* the low-rank delta is forward-only */
    const int64_t ntasks = p->Bsz * mst_num_blocks(p->D, p->G), N = p->N, row_len = p->L * N;
    const int64_t out_len = p->Bsz * p->G * row_len;
    const int nthreads = (int)p->nthreads;
    const int64_t nparts = ntasks < 4 * (int64_t)nthreads ? ntasks : 4 * (int64_t)nthreads;
    bwd_part *parts = calloc((size_t)(nparts > 0 ? nparts : 1), sizeof(bwd_part));
    if (!parts)
        return 1;
    int failed = 0;
    for (int64_t q = 0; q < nparts; q++) {
        bwd_part *pt = &parts[q];
        pt->i0 = q * ntasks / nparts;
        pt->i1 = (q + 1) * ntasks / nparts;
        pt->row0 = row_of(p, pt->i0);
        pt->nrows = row_of(p, pt->i1 - 1) - pt->row0 + 1;
        if (q == 0) {
            pt->aB = io->dBt;
            pt->aC = io->dCt;
        } else {
            pt->aB = aligned_buffer(sizeof(float) * (size_t)(pt->nrows * row_len));
            pt->aC = aligned_buffer(sizeof(float) * (size_t)(pt->nrows * row_len));
            failed |= !pt->aB || !pt->aC;
        }
    }
    if (!failed) {
#pragma omp parallel num_threads(nthreads)
        {
            FTZ_ENTER();
            const size_t T = MST_CHUNK;
            vf *buf = aligned_buffer(sizeof(vf) * (6 * T + (2 * T + 1) * (size_t)N + 2 * (size_t)N));
            if (!buf) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(static)
            for (int64_t j = 0; j < out_len; j++)
                io->dBt[j] = io->dCt[j] = 0.f;
            /* implicit barrier */
            if (!failed) {
                bwd_scratch s;
                s.us = buf;
                s.dts = s.us + T;
                s.sg = s.dts + T;
                s.dos = s.sg + T;
                s.dus = s.dos + T;
                s.dds = s.dus + T;
                s.hs = s.dds + T;
                s.as = s.hs + (T + 1) * N;
                s.pb = s.as + T * N;
                s.pc = s.pb + N;
#pragma omp for schedule(dynamic, 1)
                for (int64_t q = 0; q < nparts; q++) {
                    const bwd_part *pt = &parts[q];
                    float *aB = pt->aB, *aC = pt->aC; /* row r of the output is row r - row0 here */
                    if (q > 0) {
                        memset(aB, 0, sizeof(float) * (size_t)(pt->nrows * row_len));
                        memset(aC, 0, sizeof(float) * (size_t)(pt->nrows * row_len));
                    }
                    const int64_t shift = q > 0 ? pt->row0 * row_len : 0;
                    for (int64_t i = pt->i0; i < pt->i1; i++) {
                        if (N == 16)
                            bwd_n16(p, io, i, &s, aB, aC, shift);
                        else
                            bwd_generic(p, io, i, &s, aB, aC, shift);
                    }
                }
                /* implicit barrier; then add parts 1.. into the output, in part order */
                for (int64_t q = 1; q < nparts; q++) {
                    const bwd_part *pt = &parts[q];
                    float *oB = io->dBt + pt->row0 * row_len, *oC = io->dCt + pt->row0 * row_len;
#pragma omp for schedule(static)
                    for (int64_t j = 0; j < pt->nrows * row_len; j++) {
                        oB[j] += pt->aB[j];
                        oC[j] += pt->aC[j];
                    }
                }
            }
            free(buf);
            FTZ_LEAVE();
        }
    }
    for (int64_t q = 1; q < nparts; q++) {
        free(parts[q].aB);
        free(parts[q].aC);
    }
    free(parts);
    return failed;
}
