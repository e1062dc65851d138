/* Fused bf16 kernels for CPU inference, the loss pass and the judge (loaded by
   middo_core/models/speedups/native.py).

Each kernel does in one sweep over memory what PyTorch does in several, and rounds to bf16
exactly where the PyTorch code it replaces rounds. Rows are shared among the threads of the
OpenMP runtime the process already has loaded (PyTorch's). Compiled on the machine that runs
it (-march=native): nothing here assumes an instruction set, the compiler vectorizes the loops. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

static inline float from_bf16(bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* round to nearest even, as PyTorch converts (the values here are never NaN) */
static inline bf16 to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

static inline float round_bf16(float f) { return from_bf16(to_bf16(f)); }

/* 2^t for t <= 0: 2^floor(t) from the exponent bits, 2^fraction from a degree-5 minimax
   polynomial (relative error 9e-8, below float32's own rounding of the softmax's sums);
   0 below -126, where float32 has only subnormals left */
static inline float exp2_nonpositive(float t) {
    float zero = t < -126.0f ? 0.0f : 1.0f;
    t = t < -126.0f ? -126.0f : t;
    float whole = floorf(t);
    float f = t - whole;
    float p = 1.8775767e-3f;
    p = p * f + 8.9893397e-3f;
    p = p * f + 5.5826318e-2f;
    p = p * f + 2.4015361e-1f;
    p = p * f + 6.9315308e-1f;
    p = p * f + 9.9999994e-1f;
    int32_t bits = ((int32_t)whole + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale * zero;
}

static const float LOG2E = 1.4426950408889634f;

/* Softmax over keys 0..p of each score row, in place, zero after p: `mats` matrices of `rows`
   rows of `width` bf16 scores each; row r of a matrix holds query position p = start + r / rep
   (each position's `rep` query heads in consecutive rows). This is the causal mask's bias add
   and torch.softmax in one sweep, and masked keys cost no exponential. */
void causal_softmax_bf16(bf16 *scores, int64_t mats, int64_t rows, int64_t width,
                         int64_t start, int64_t rep) {
#pragma omp parallel
    {
        float *buf = malloc((size_t)width * sizeof(float)); /* per thread, off the stack */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < mats * rows; i++) {
            bf16 *row = scores + i * width;
            int64_t len = start + (i % rows) / rep + 1;
            if (len > width) len = width;
            float top = -INFINITY;
#pragma omp simd reduction(max : top)
            for (int64_t j = 0; j < len; j++) {
                buf[j] = from_bf16(row[j]);
                top = buf[j] > top ? buf[j] : top;
            }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < len; j++) {
                buf[j] = exp2_nonpositive((buf[j] - top) * LOG2E);
                sum += buf[j];
            }
            float inv = 1.0f / sum;
#pragma omp simd
            for (int64_t j = 0; j < len; j++) row[j] = to_bf16(buf[j] * inv);
            memset(row + len, 0, (size_t)(width - len) * sizeof(bf16));
        }
        free(buf);
    }
}

/* Softmax of each score row in place after adding its additive mask bias (0 where a key is
   attended, the lowest bf16 value where not), the sum rounded to bf16 as PyTorch's add_ rounds
   it: `batches` x `kv` matrices of `positions` x `rep` rows of `width` scores; the bias row of
   batch b, position i is bias + b * bias_batch + i * bias_row (bias_batch 0: one for all). */
void masked_softmax_bf16(bf16 *scores, int64_t batches, int64_t kv, int64_t positions, int64_t rep,
                         int64_t width, const bf16 *bias, int64_t bias_batch, int64_t bias_row) {
    int64_t rows = batches * kv * positions * rep;
#pragma omp parallel
    {
        float *buf = malloc((size_t)width * sizeof(float)); /* per thread, off the stack */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; i++) {
            bf16 *row = scores + i * width;
            int64_t b = i / (kv * positions * rep), p = (i / rep) % positions;
            const bf16 *add = bias + b * bias_batch + p * bias_row;
            float top = -INFINITY;
#pragma omp simd reduction(max : top)
            for (int64_t j = 0; j < width; j++) {
                buf[j] = round_bf16(from_bf16(row[j]) + from_bf16(add[j]));
                top = buf[j] > top ? buf[j] : top;
            }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < width; j++) {  /* scaled after the subtraction: no overflow */
                buf[j] = exp2_nonpositive((buf[j] - top) * LOG2E);
                sum += buf[j];
            }
            float inv = 1.0f / sum;
#pragma omp simd
            for (int64_t j = 0; j < width; j++) row[j] = to_bf16(buf[j] * inv);
        }
        free(buf);
    }
}

/* Cross-entropy of each bf16 logit row against its target, in float32: log(sum(exp(x))) - x_t,
   as F.cross_entropy on the row's float32 copy computes it, without writing that copy. */
void row_nll_bf16(const bf16 *logits, int64_t rows, int64_t vocab, const int64_t *targets,
                  float *out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const bf16 *row = logits + i * vocab;
        float top = -INFINITY;
#pragma omp simd reduction(max : top)
        for (int64_t j = 0; j < vocab; j++) {
            float x = from_bf16(row[j]);
            top = x > top ? x : top;
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < vocab; j++) sum += exp2_nonpositive((from_bf16(row[j]) - top) * LOG2E);
        out[i] = top + logf(sum) - from_bf16(row[targets[i]]);
    }
}

/* Llama's RMSNorm of bf16 rows: x * rsqrt(mean(x^2) + eps) in float32, rounded to bf16, then
   times the bf16 weight, rounded again (transformers' LlamaRMSNorm, rounding for rounding). */
void rms_norm_bf16(const bf16 *x, int64_t rows, int64_t dim, const bf16 *weight, float eps,
                   bf16 *out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const bf16 *row = x + i * dim;
        bf16 *dst = out + i * dim;
        float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
        for (int64_t j = 0; j < dim; j++) squares += from_bf16(row[j]) * from_bf16(row[j]);
        float scale = 1.0f / sqrtf(squares / (float)dim + eps);
#pragma omp simd
        for (int64_t j = 0; j < dim; j++)
            dst[j] = to_bf16(from_bf16(weight[j]) * round_bf16(from_bf16(row[j]) * scale));
    }
}

/* The rotary embedding in place on `heads` heads of size `dim` per token (rows `stride` bf16
   apart): x * cos + rotate_half(x) * sin with each product and the sum rounded to bf16, as
   transformers' apply_rotary_pos_emb computes it; cos and sin are per token, (tokens x dim). */
void rotary_bf16(bf16 *x, int64_t tokens, int64_t stride, int64_t heads, int64_t dim,
                 const bf16 *cos, const bf16 *sin) {
    int64_t half = dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tokens; t++) {
        const bf16 *c = cos + t * dim, *s = sin + t * dim;
        for (int64_t h = 0; h < heads; h++) {
            bf16 *v = x + t * stride + h * dim;
#pragma omp simd
            for (int64_t j = 0; j < half; j++) {
                float a = from_bf16(v[j]), b = from_bf16(v[j + half]);
                float lo = round_bf16(a * from_bf16(c[j])) + round_bf16(-b * from_bf16(s[j]));
                float hi = round_bf16(b * from_bf16(c[j + half])) + round_bf16(a * from_bf16(s[j + half]));
                v[j] = to_bf16(lo);
                v[j + half] = to_bf16(hi);
            }
        }
    }
}
