/* The weight gradient of a depthwise convolution on CPU, for nat.supernet.depthwise.

   oneDNN's depthwise backward-weights kernel (what PyTorch calls on CPU) runs at 3.5-4 GMAC/s on one
   core for 5x5 and 7x7 kernels, 5-9x the time of the forward pass, and was the largest single cost of a
   supernet training step left (docs/scale.md). This is the direct sum, vectorised over channels:

       dW[c, i, j] = sum over images n and output positions (r, q) of
                     dY[n, r, q, c] * X[n, r*s + i - p, q*s + j - p, c]

   with channels-last tensors, so 16 (or 8) neighbouring channels are one vector. For a block of
   channels, one kernel row i and one output row r, the k accumulators of taps (i, 0..k-1) stay in
   registers while the row is swept; taps that fall in the zero padding are skipped. Every channel's
   sum runs in the same fixed order whatever the thread count, so results are deterministic.
   Compiled on first use by nat.supernet.native (plain C, no PyTorch headers); k <= 7. */

#include <pthread.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef float v1;

/* One output row against one input row for a block of channels: acc[kw] += g[ow] * x[ow*s + kw - p].
   Edges (taps in the padding) take a checked loop, the interior an unchecked one. */
#define ROW_PASS(NAME, VT)                                                                                        \
    static inline __attribute__((always_inline)) void NAME(const float *xr, const float *gr, long cs, int w,       \
                                                           int ow_n, int s, int p, int k, VT *a) {                \
        int lo = (p + s - 1) / s;                      /* first output whose taps are all inside the row */        \
        int hi = w - k + p >= 0 ? (w - k + p) / s : -1; /* last one */                                            \
        if (lo > ow_n) lo = ow_n;                                                                                 \
        if (hi > ow_n - 1) hi = ow_n - 1;                                                                         \
        if (hi < lo - 1) hi = lo - 1;                                                                             \
        for (int o = 0; o < ow_n; o++) {                                                                          \
            if (o == lo) {                                                                                        \
                for (; o <= hi; o++) {                                                                            \
                    VT gv = *(const VT *)(gr + o * cs);                                                           \
                    const float *xp = xr + (long)(o * s - p) * cs;                                                \
                    for (int j = 0; j < k; j++) a[j] += gv * *(const VT *)(xp + j * cs);                         \
                }                                                                                                 \
                if (o >= ow_n) break;                                                                             \
            }                                                                                                     \
            VT gv = *(const VT *)(gr + o * cs);                                                                   \
            for (int j = 0; j < k; j++) {                                                                         \
                int i = o * s + j - p;                                                                            \
                if (i >= 0 && i < w) a[j] += gv * *(const VT *)(xr + (long)i * cs);                              \
            }                                                                                                     \
        }                                                                                                         \
    }

ROW_PASS(row16, v16)
ROW_PASS(row8, v8)
ROW_PASS(row1, v1)

#define BLOCK(NAME, ROW, VT, LANES)                                                                               \
    static inline __attribute__((always_inline)) void NAME(const float *x, const float *g, float *out, int n_,     \
                                                           int h, int w, int c, int oh_n, int ow_n, int k, int s,  \
                                                           int p) {                                               \
        VT acc[49];                                                                                               \
        memset(acc, 0, sizeof(acc));                                                                              \
        for (int n = 0; n < n_; n++)                                                                              \
            for (int oh = 0; oh < oh_n; oh++) {                                                                   \
                const float *gr = g + ((long)n * oh_n + oh) * ow_n * c;                                           \
                for (int kh = 0; kh < k; kh++) {                                                                  \
                    int ih = oh * s + kh - p;                                                                     \
                    if (ih < 0 || ih >= h) continue;                                                              \
                    VT a[7];                                                                                      \
                    for (int j = 0; j < k; j++) a[j] = acc[kh * k + j];                                           \
                    ROW(x + ((long)n * h + ih) * w * c, gr, c, w, ow_n, s, p, k, a);                             \
                    for (int j = 0; j < k; j++) acc[kh * k + j] = a[j];                                           \
                }                                                                                                 \
            }                                                                                                     \
        for (int l = 0; l < LANES; l++)                                                                           \
            for (int t = 0; t < k * k; t++) out[l * k * k + t] = ((float *)&acc[t])[l];                          \
    }

BLOCK(block16, row16, v16, 16)
BLOCK(block8, row8, v8, 8)
BLOCK(block1, row1, v1, 1)

#define DISPATCH(BLK, LANES)                                                                                      \
    switch (k) {                                                                                                  \
        case 3: BLK(x + c0, g + c0, out + (long)c0 * 9, n_, h, w, c, oh_n, ow_n, 3, s, p); break;                \
        case 5: BLK(x + c0, g + c0, out + (long)c0 * 25, n_, h, w, c, oh_n, ow_n, 5, s, p); break;               \
        case 7: BLK(x + c0, g + c0, out + (long)c0 * 49, n_, h, w, c, oh_n, ow_n, 7, s, p); break;               \
        default: BLK(x + c0, g + c0, out + (long)c0 * k * k, n_, h, w, c, oh_n, ow_n, k, s, p); break;           \
    }                                                                                                             \
    c0 += LANES;

/* Channels [c_begin, c_end) of one call. */
static void weight_grad_range(const float *x, const float *g, float *out, int n_, int h, int w, int c, int oh_n,
                              int ow_n, int k, int s, int p, int c_begin, int c_end) {
    int c0 = c_begin;
    while (c0 + 16 <= c_end) { DISPATCH(block16, 16) }
    while (c0 + 8 <= c_end) { DISPATCH(block8, 8) }
    while (c0 < c_end) { DISPATCH(block1, 1) }
}

struct job {
    const float *x, *g;
    float *out;
    int n, h, w, c, oh, ow, k, s, p, c_begin, c_end;
};

static void *run_job(void *arg) {
    struct job *j = arg;
    weight_grad_range(j->x, j->g, j->out, j->n, j->h, j->w, j->c, j->oh, j->ow, j->k, j->s, j->p, j->c_begin,
                      j->c_end);
    return NULL;
}

#define MAX_THREADS 256

/* x: (N, H, W, C) contiguous; g: (N, OH, OW, C) contiguous; out: (C, K, K). Returns 0, or -1 for a kernel
   larger than 7. Channels are split in blocks of 16 over `threads` threads (the caller's included). */
int nat_depthwise_weight_grad(const float *x, const float *g, float *out, int n, int h, int w, int c, int oh,
                              int ow, int k, int s, int p, int threads) {
    if (k < 1 || k > 7) return -1;
    int blocks = (c + 15) / 16;
    if (threads > blocks) threads = blocks;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    struct job jobs[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        int b0 = blocks * t / threads, b1 = blocks * (t + 1) / threads;
        jobs[t] = (struct job){x, g, out, n, h, w, c, oh, ow, k, s, p, 16 * b0, 16 * b1 < c ? 16 * b1 : c};
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            run_job(&jobs[t]); /* could not start a thread: do its share here */
    }
    return 0;
}
