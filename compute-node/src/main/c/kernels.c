/*
 * Strata's native integer kernels: activations quantized to 8 bits, dotted with quantized weight rows by integer
 * dot-product instructions. Compiled once per instruction set by build.sh with -DISA=<name> and that set's -m flags;
 * every exported symbol carries the name (strata_<isa>_<kernel>), and the Java side (NativeKernels) binds the set
 * that the CPU supports (see cpu.c).
 *
 * Numerics follow ggml's definitions: activations are quantized per block (Q8_0: 32 values, an f16 scale, round half
 * away from zero; Q8_K: 256 values, an f32 scale, round half to even), products are summed in int32 per block and
 * the block scales applied in float. Only the order of the float additions differs from ggml's reference code.
 *
 * Activations are kept as three arrays (struct of arrays), not as ggml's interleaved blocks:
 *   qs  int8[n]        the quantized values
 *   d   float[n/B]     the block scales (for Q8_0 the f16-rounded scale, as a float)
 *   aux int32[...]     Q8_0: -bias * (sum of each group of 4 values), n/4 entries, the unsigned-weight correction
 *                      Q8_K: the sums of each group of 16 values (ggml's bsums), n/16 entries
 *
 * The weight kernels compute out[outOffset + t * outStride + r] for rows [0, rows) of w + wOffset (rowBytes apart)
 * and tokens [0, tokens): a whole range of rows per call, so the cost of a call from Java is paid once per range.
 * mv_<type> is one dot per row and token (decode); mm_<type> the batched form (several tokens per pass over a group
 * of rows: prefill and batched decode).
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef ISA
#error "compile with -DISA=<instruction set name>"
#endif
#define CAT3(a, b, c) a##b##c
#define NAME3(a, b, c) CAT3(a, b, c)
#define EXPORT_NAME(kernel) NAME3(strata_, ISA, _##kernel)
#define EXPORT(kernel) __attribute__((visibility("default"))) EXPORT_NAME(kernel)

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define USE_VNNI 1
#else
#define USE_VNNI 0
#endif

#define QK8_0 32
#define QK_K 256
#define Q4_0_BYTES 18
#define Q8_0_BYTES 34
#define Q4_K_BYTES 144
#define Q6_K_BYTES 210
/* Tokens of a batched K-quant tile (q4_k_tile, q6_k_tile). */
#define KQ_TOKENS 4

static inline float f16_to_f32(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float f32_round_f16(float f)
{
    return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

/* ---------------------------------------------------------------------------------------------------------------
 * Activation quantization
 * ------------------------------------------------------------------------------------------------------------- */

/*
 * Q8_0: per block of 32, d = amax / 127 rounded to f16, q = roundf(x / d) with the unrounded d (as ggml).
 * aux gets -bias * (sum of each 4 consecutive q): the weight kernels take the weights as unsigned bytes
 * (w + bias) and start their int32 lanes from aux, so that each lane ends as the signed product.
 */
void EXPORT(quantize_q8_0)(const float *x, int32_t n, int8_t *qs, float *d, int32_t *aux, int32_t bias)
{
    /* 256-bit code for every set (AVX2 is in all three): 4 vectors per block */
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < n / QK8_0; b++)
    {
        const float *xb = x + b * QK8_0;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++)
        {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], absMask));
        }
        const __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        const __m128 m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
        const float dd = amax / 127.0f;
        const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
        d[b] = f32_round_f16(dd);
        const __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++)
        {
            /* roundf (half away from zero): truncate, then step away from zero where |fraction| >= 0.5 (the
               fraction t - trunc(t) is exact) */
            const __m256 t = _mm256_mul_ps(v[i], idv);
            const __m256 tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_and_ps(_mm256_sub_ps(t, tr), absMask);
            const __m256 away = _mm256_or_ps(_mm256_and_ps(one, absMask),
                _mm256_and_ps(t, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000))));
            const __m256 r = _mm256_add_ps(tr, _mm256_and_ps(away, _mm256_cmp_ps(frac, half, _CMP_GE_OQ)));
            q[i] = _mm256_cvtps_epi32(r);
        }
        /* 32 int32 -> 32 int8 in order: packs work within 128-bit lanes, the permute puts the dwords back */
        const __m256i w01 = _mm256_packs_epi32(q[0], q[1]);
        const __m256i w23 = _mm256_packs_epi32(q[2], q[3]);
        const __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order);
        _mm256_storeu_si256((__m256i *)(qs + b * QK8_0), b8);
        const __m256i sums4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, b8), ones16);
        _mm256_storeu_si256((__m256i *)(aux + b * 8), _mm256_mullo_epi32(sums4, _mm256_set1_epi32(-bias)));
    }
}

/* Q8_K: per block of 256, the value of largest magnitude maps to -127, q = min(127, rint(x * -127 / max)). */
void EXPORT(quantize_q8_k)(const float *x, int32_t n, int8_t *qs, float *d, int32_t *bsums)
{
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i c127 = _mm256_set1_epi32(127);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int b = 0; b < n / QK_K; b++)
    {
        const float *xb = x + b * QK_K;
        int8_t *q = qs + b * QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8)
        {
            m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb + j), absMask));
        }
        const __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        const __m128 m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
        if (amax == 0.0f)
        {
            d[b] = 0.0f;
            memset(q, 0, QK_K);
            for (int g = 0; g < QK_K / 16; g++)
            {
                bsums[b * 16 + g] = 0;
            }
            continue;
        }
        /* the first value of that magnitude, as the scalar search with a strict > finds it */
        float max = 0.0f;
        const __m256 amaxv = _mm256_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 8)
        {
            const int hit = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(xb + j), absMask), amaxv, _CMP_EQ_OQ));
            if (hit != 0)
            {
                max = xb[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 32)
        {
            __m256i v[4];
            for (int i = 0; i < 4; i++)
            {
                /* lrintf: the current rounding mode, round half to even */
                v[i] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(xb + j + 8 * i))), c127);
            }
            const __m256i b8 = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3])), order);
            _mm256_storeu_si256((__m256i *)(q + j), b8);
            /* sums of 16: sums of 8 of q + 128 (vpsadbw), minus 8 x 128 each */
            const __m256i s8 = _mm256_sad_epu8(_mm256_xor_si256(b8, flip), _mm256_setzero_si256());
            bsums[b * 16 + j / 16] = (int32_t)(_mm256_extract_epi64(s8, 0) + _mm256_extract_epi64(s8, 1)) - 2048;
            bsums[b * 16 + j / 16 + 1] = (int32_t)(_mm256_extract_epi64(s8, 2) + _mm256_extract_epi64(s8, 3)) - 2048;
        }
        d[b] = 1.0f / iscale;
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Row dot products, one per weight type
 * ------------------------------------------------------------------------------------------------------------- */

/* Q4_K sub-block scales and mins (ggml's get_scale_min_k4) for all 8 sub-blocks at once, as 4 bytes per word. */
static inline void q4_k_scales_words(const uint8_t *s, uint32_t *sc, uint32_t *m)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    sc[0] = u0 & 0x3F3F3F3Fu;
    m[0] = u1 & 0x3F3F3F3Fu;
    sc[1] = (u2 & 0x0F0F0F0Fu) | (((u0 >> 6) & 0x03030303u) << 4);
    m[1] = ((u2 >> 4) & 0x0F0F0F0Fu) | (((u1 >> 6) & 0x03030303u) << 4);
}

#if USE_VNNI

static inline float hsum512(__m512 v)
{
    return _mm512_reduce_add_ps(v);
}

/* Two blocks' scale products as one vector: lanes 0-7 a, lanes 8-15 b. */
static inline __m512 scale2(float a, float b)
{
    return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

/*
 * Q4_0 x Q8_0. The 16 nibble bytes of a block are laid out [low nibbles | high nibbles] = weights 0-15, 16-31;
 * two blocks fill one 512-bit vector of unsigned weights (nibble = w + 8), multiplied with the 64 activation bytes
 * by vpdpbusd, whose lanes start from aux (-8 * the activations' group sums).
 */
static inline float dot_q4_0(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *aux)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i dup = _mm512_set_epi64(5, 4, 5, 4, 1, 0, 1, 0);
    __m512 acc0 = _mm512_setzero_ps();
    __m512 acc1 = _mm512_setzero_ps();
    int b = 0;
    for (; b + 3 < nb; b += 4)
    {
        const uint8_t *w0 = w + b * Q4_0_BYTES;
        const __m512i r01 = _mm512_permutexvar_epi64(dup, _mm512_inserti64x4(_mm512_castsi256_si512(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w0 + 2)))),
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w0 + Q4_0_BYTES + 2))), 1));
        const __m512i r23 = _mm512_permutexvar_epi64(dup, _mm512_inserti64x4(_mm512_castsi256_si512(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w0 + 2 * Q4_0_BYTES + 2)))),
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w0 + 3 * Q4_0_BYTES + 2))), 1));
        const __m512i u01 = _mm512_mask_blend_epi64(0xCC, _mm512_and_si512(r01, m4),
            _mm512_and_si512(_mm512_srli_epi16(r01, 4), m4));
        const __m512i u23 = _mm512_mask_blend_epi64(0xCC, _mm512_and_si512(r23, m4),
            _mm512_and_si512(_mm512_srli_epi16(r23, 4), m4));
        const __m512i s01 = _mm512_dpbusd_epi32(_mm512_loadu_si512(aux + b * 8), u01,
            _mm512_loadu_si512(qs + b * QK8_0));
        const __m512i s23 = _mm512_dpbusd_epi32(_mm512_loadu_si512(aux + b * 8 + 16), u23,
            _mm512_loadu_si512(qs + b * QK8_0 + 64));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s01),
            scale2(f16_to_f32(w0) * d[b], f16_to_f32(w0 + Q4_0_BYTES) * d[b + 1]), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s23),
            scale2(f16_to_f32(w0 + 2 * Q4_0_BYTES) * d[b + 2], f16_to_f32(w0 + 3 * Q4_0_BYTES) * d[b + 3]), acc1);
    }
    float sum = hsum512(_mm512_add_ps(acc0, acc1));
    for (; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q4_0_BYTES;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(wb + 2));
        const __m256i m4h = _mm256_set1_epi8(0x0F);
        const __m256i r = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), raw, 1);
        const __m256i u = _mm256_blend_epi32(_mm256_and_si256(r, m4h),
            _mm256_and_si256(_mm256_srli_epi16(r, 4), m4h), 0xF0);
        const __m256i s = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(aux + b * 8)), u,
            _mm256_loadu_si256((const __m256i *)(qs + b * QK8_0)));
        const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        const int32_t si = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
        sum += (float)si * (f16_to_f32(wb) * d[b]);
    }
    return sum;
}

/* Q8_0 x Q8_0: the weights made unsigned by flipping the sign bit (w + 128), corrected by aux as for Q4_0. */
static inline float dot_q8_0(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *aux)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 acc0 = _mm512_setzero_ps();
    __m512 acc1 = _mm512_setzero_ps();
    int b = 0;
    for (; b + 3 < nb; b += 4)
    {
        const uint8_t *w0 = w + b * Q8_0_BYTES;
        const __m512i u01 = _mm512_xor_si512(flip, _mm512_inserti64x4(_mm512_castsi256_si512(
            _mm256_loadu_si256((const __m256i *)(w0 + 2))), _mm256_loadu_si256((const __m256i *)(w0 + Q8_0_BYTES + 2)), 1));
        const __m512i u23 = _mm512_xor_si512(flip, _mm512_inserti64x4(_mm512_castsi256_si512(
            _mm256_loadu_si256((const __m256i *)(w0 + 2 * Q8_0_BYTES + 2))),
            _mm256_loadu_si256((const __m256i *)(w0 + 3 * Q8_0_BYTES + 2)), 1));
        const __m512i s01 = _mm512_dpbusd_epi32(_mm512_loadu_si512(aux + b * 8), u01,
            _mm512_loadu_si512(qs + b * QK8_0));
        const __m512i s23 = _mm512_dpbusd_epi32(_mm512_loadu_si512(aux + b * 8 + 16), u23,
            _mm512_loadu_si512(qs + b * QK8_0 + 64));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s01),
            scale2(f16_to_f32(w0) * d[b], f16_to_f32(w0 + Q8_0_BYTES) * d[b + 1]), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s23),
            scale2(f16_to_f32(w0 + 2 * Q8_0_BYTES) * d[b + 2], f16_to_f32(w0 + 3 * Q8_0_BYTES) * d[b + 3]), acc1);
    }
    float sum = hsum512(_mm512_add_ps(acc0, acc1));
    for (; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q8_0_BYTES;
        const __m256i u = _mm256_xor_si256(_mm256_set1_epi8((char)0x80), _mm256_loadu_si256((const __m256i *)(wb + 2)));
        const __m256i s = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(aux + b * 8)), u,
            _mm256_loadu_si256((const __m256i *)(qs + b * QK8_0)));
        const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        const int32_t si = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
        sum += (float)si * (f16_to_f32(wb) * d[b]);
    }
    return sum;
}

/*
 * Q4_K x Q8_K: per 64 weights one vector [low nibbles | high nibbles] (sub-blocks 2j and 2j+1) multiplied with the
 * activations and the sub-block scales; the mins are applied through the activations' bsums. The per-block sums stay
 * in vectors (scaled in float per lane, one horizontal sum per row at the end).
 */
static inline float dot_q4_k(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *bsums)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* byte j of the 8 scales (or mins) to both 16-bit halves of sub-block j: lanes 2j, 2j+1 of the 32-bit mins */
    const __m128i pairs = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    __m512 acc = _mm512_setzero_ps();
    __m512 accm = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q4_K_BYTES;
        const int8_t *y = qs + b * QK_K;
        uint32_t scw[2];
        uint32_t mw[2];
        q4_k_scales_words(wb + 4, scw, mw);
        const uint8_t *sc = (const uint8_t *)scw;
        const __m128i m8 = _mm_set_epi32(0, 0, (int)mw[1], (int)mw[0]);
        __m512i sumi = _mm512_setzero_si512();
        for (int j = 0; j < 4; j++)
        {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(wb + 16 + 32 * j));
            const __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(raw), raw, 1);
            const __m512i u = _mm512_mask_blend_epi64(0xF0, _mm512_and_si512(r, m4),
                _mm512_and_si512(_mm512_srli_epi16(r, 4), m4));
            /* pairs by vpmaddubsw (2 * 15 * 127 fits 16 bits), then the scale by vpmaddwd */
            const __m512i p = _mm512_maddubs_epi16(u, _mm512_loadu_si512(y + 64 * j));
            /* sub-block 2j's scale on the low 256 bits, 2j+1's on the high */
            const __m512i scv = _mm512_inserti64x4(_mm512_set1_epi16(sc[2 * j]), _mm256_set1_epi16(sc[2 * j + 1]), 1);
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p, scv));
        }
        /* mins x (bsums 2j + bsums 2j+1), per lane */
        const __m512i mins = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(m8, pairs));
        const __m512i mterm = _mm512_mullo_epi32(mins, _mm512_loadu_si512(bsums + b * 16));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(f16_to_f32(wb) * d[b]), acc);
        accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mterm), _mm512_set1_ps(f16_to_f32(wb + 2) * d[b]), accm);
    }
    return hsum512(acc) - hsum512(accm);
}

/*
 * Q6_K x Q8_K: a half super-block (128 weights) is 64 bytes of low 4 bits and 32 bytes of high 2 bits; two vectors
 * of unsigned 6-bit weights (w + 32) per half, vpdpbusd, times the 16-weight group scales in int32; the -32 is
 * applied once per super-block through the bsums.
 */
static inline float dot_q6_k(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *bsums)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i shiftA = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shiftB = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m128i pattern[4] = {
        _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
        _mm_setr_epi8(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
        _mm_setr_epi8(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
        _mm_setr_epi8(12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15)};
    float sum = 0.0f;
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q6_K_BYTES;
        const int8_t *y = qs + b * QK_K;
        const __m128i sc = _mm_loadu_si128((const __m128i *)(wb + 192));
        const __m512i sc32 = _mm512_cvtepi8_epi32(sc);
        __m512i sumi = _mm512_slli_epi32(
            _mm512_mullo_epi32(sc32, _mm512_loadu_si512(bsums + b * 16)), 5);
        sumi = _mm512_sub_epi32(_mm512_setzero_si512(), sumi);
        for (int h = 0; h < 2; h++)
        {
            const __m512i a = _mm512_loadu_si512(wb + 64 * h);
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h));
            const __m512i hh = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
            const __m512i u1 = _mm512_or_si512(_mm512_and_si512(a, m4),
                _mm512_and_si512(_mm512_sllv_epi16(hh, shiftA), m30));
            const __m512i u2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), m4),
                _mm512_and_si512(_mm512_srlv_epi16(hh, shiftB), m30));
            const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, _mm512_loadu_si512(y + 128 * h));
            const __m512i p2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u2, _mm512_loadu_si512(y + 128 * h + 64));
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(p1, _mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc, pattern[2 * h]))));
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(p2, _mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc, pattern[2 * h + 1]))));
        }
        /* the lanes hold unsigned-weight partial sums that cancel: sum them in int32, exactly, before the scale */
        sum += (f16_to_f32(wb + 208) * d[b]) * (float)_mm512_reduce_add_epi32(sumi);
    }
    return sum;
}

/*
 * Tiles of up to KQ_TOKENS tokens against one row, for the batched K-quant products (mm_q4_k, mm_q6_k): a super-block
 * is unpacked once for the tile, and each token then takes exactly dot_q4_k's (dot_q6_k's) steps: the same integer
 * lanes (exact, whatever order they are added in) and the same float operations in block order, so a token gets the
 * same bits in a batch as alone. qs, d, bsums and out are at the tile's first token.
 */
static inline __attribute__((always_inline)) void q4_k_tile(const int TN, const uint8_t *w, int nb, int cols,
    const int8_t *qs, const float *d, const int32_t *bsums, float *out, int32_t outStride)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m128i pairs = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const int nbs = cols / 16;
    __m512 acc[KQ_TOKENS];
    __m512 accm[KQ_TOKENS];
    for (int t = 0; t < TN; t++)
    {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm512_setzero_ps();
    }
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q4_K_BYTES;
        uint32_t scw[2];
        uint32_t mw[2];
        q4_k_scales_words(wb + 4, scw, mw);
        const uint8_t *sc = (const uint8_t *)scw;
        const __m128i m8 = _mm_set_epi32(0, 0, (int)mw[1], (int)mw[0]);
        __m512i sumi[KQ_TOKENS];
        for (int t = 0; t < TN; t++)
        {
            sumi[t] = _mm512_setzero_si512();
        }
        for (int j = 0; j < 4; j++)
        {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(wb + 16 + 32 * j));
            const __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(raw), raw, 1);
            const __m512i u = _mm512_mask_blend_epi64(0xF0, _mm512_and_si512(r, m4),
                _mm512_and_si512(_mm512_srli_epi16(r, 4), m4));
            const __m512i scv = _mm512_inserti64x4(_mm512_set1_epi16(sc[2 * j]), _mm256_set1_epi16(sc[2 * j + 1]), 1);
            for (int t = 0; t < TN; t++)
            {
                const __m512i p = _mm512_maddubs_epi16(u, _mm512_loadu_si512(qs + (int64_t)t * cols + b * QK_K + 64 * j));
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_madd_epi16(p, scv));
            }
        }
        const __m512i mins = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(m8, pairs));
        const float wd = f16_to_f32(wb);
        const float wm = f16_to_f32(wb + 2);
        for (int t = 0; t < TN; t++)
        {
            const float dt = d[(int64_t)t * nb + b];
            const __m512i mterm = _mm512_mullo_epi32(mins, _mm512_loadu_si512(bsums + (int64_t)t * nbs + b * 16));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[t]), _mm512_set1_ps(wd * dt), acc[t]);
            accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mterm), _mm512_set1_ps(wm * dt), accm[t]);
        }
    }
    for (int t = 0; t < TN; t++)
    {
        out[(int64_t)t * outStride] = hsum512(acc[t]) - hsum512(accm[t]);
    }
}

static inline __attribute__((always_inline)) void q6_k_tile(const int TN, const uint8_t *w, int nb, int cols,
    const int8_t *qs, const float *d, const int32_t *bsums, float *out, int32_t outStride)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i shiftA = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shiftB = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m128i pattern[4] = {
        _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
        _mm_setr_epi8(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
        _mm_setr_epi8(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
        _mm_setr_epi8(12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15)};
    const int nbs = cols / 16;
    float sum[KQ_TOKENS];
    for (int t = 0; t < TN; t++)
    {
        sum[t] = 0.0f;
    }
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q6_K_BYTES;
        const __m128i sc = _mm_loadu_si128((const __m128i *)(wb + 192));
        const __m512i sc32 = _mm512_cvtepi8_epi32(sc);
        __m512i sumi[KQ_TOKENS];
        for (int t = 0; t < TN; t++)
        {
            sumi[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(
                _mm512_mullo_epi32(sc32, _mm512_loadu_si512(bsums + (int64_t)t * nbs + b * 16)), 5));
        }
        for (int h = 0; h < 2; h++)
        {
            const __m512i a = _mm512_loadu_si512(wb + 64 * h);
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h));
            const __m512i hh = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
            const __m512i u1 = _mm512_or_si512(_mm512_and_si512(a, m4),
                _mm512_and_si512(_mm512_sllv_epi16(hh, shiftA), m30));
            const __m512i u2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), m4),
                _mm512_and_si512(_mm512_srlv_epi16(hh, shiftB), m30));
            const __m512i s1 = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc, pattern[2 * h]));
            const __m512i s2 = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(sc, pattern[2 * h + 1]));
            for (int t = 0; t < TN; t++)
            {
                const int8_t *y = qs + (int64_t)t * cols + b * QK_K + 128 * h;
                const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, _mm512_loadu_si512(y));
                const __m512i p2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u2, _mm512_loadu_si512(y + 64));
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(p1, s1));
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(p2, s2));
            }
        }
        const float ws = f16_to_f32(wb + 208);
        for (int t = 0; t < TN; t++)
        {
            sum[t] += (ws * d[(int64_t)t * nb + b]) * (float)_mm512_reduce_add_epi32(sumi[t]);
        }
    }
    for (int t = 0; t < TN; t++)
    {
        out[(int64_t)t * outStride] = sum[t];
    }
}

#else /* AVX2 (also the AVX-512 BW build): pmaddubsw + pmaddwd, 256 bits */

static inline float hsum256(__m256 v)
{
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

static inline int32_t hsum256_epi32(__m256i v)
{
    const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    return _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
}

/* [a x 8 | b x 8] as 16-bit lanes: one scale per 16 bytes of pmaddubsw output */
static inline __m256i scale16(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

/* Q4_0 x Q8_0: unsigned nibbles (w + 8) by pmaddubsw (no saturation: 2 * 15 * 127), aux adds -8 * the sums. */
static inline float dot_q4_0(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *aux)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    int b = 0;
    for (; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q4_0_BYTES;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(wb + 2));
        const __m256i u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
        const __m256i p = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(aux + b * 8)),
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(qs + b * QK8_0))), ones));
        const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16_to_f32(wb) * d[b]));
        if (b & 1)
        {
            acc1 = _mm256_add_ps(acc1, t);
        }
        else
        {
            acc0 = _mm256_add_ps(acc0, t);
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* One Q8_0 block's 8 lane sums, as floats: |w| (absw) times y with w's sign (|-128| = 128 fits unsigned; 2 * 128 * 127
 * does not saturate). */
static inline __m256 q8_block(__m256i absw, __m256i w, __m256i y)
{
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(absw, _mm256_sign_epi8(y, w)),
        _mm256_set1_epi16(1)));
}

/* Q8_0 x Q8_0 (q8_block per block): two accumulators over alternate blocks, one horizontal sum. */
static inline float dot_q8_0(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *aux)
{
    (void)aux;
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q8_0_BYTES;
        const __m256i v = _mm256_loadu_si256((const __m256i *)(wb + 2));
        const __m256i y = _mm256_loadu_si256((const __m256i *)(qs + b * QK8_0));
        const __m256 t = _mm256_mul_ps(q8_block(_mm256_abs_epi8(v), v, y), _mm256_set1_ps(f16_to_f32(wb) * d[b]));
        if (b & 1)
        {
            acc1 = _mm256_add_ps(acc1, t);
        }
        else
        {
            acc0 = _mm256_add_ps(acc0, t);
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/*
 * Q4_K x Q8_K: per 32 weights pmaddubsw, then pmaddwd by the sub-block scale; the mins through the bsums, per lane
 * (16 bsums, each times its sub-block's min, in two vectors added). As the VNNI kernel, the per-block sums stay in
 * vectors (scaled in float per lane, one horizontal sum per row at the end).
 */
static inline float dot_q4_k(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *bsums)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* byte j of the 8 mins to bytes 2j and 2j+1: the mins of bsums 2j and 2j+1 */
    const __m128i pairs = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    __m256 acc = _mm256_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q4_K_BYTES;
        const int8_t *y = qs + b * QK_K;
        uint32_t scw[2];
        uint32_t mw[2];
        q4_k_scales_words(wb + 4, scw, mw);
        const uint8_t *sc = (const uint8_t *)scw;
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++)
        {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(wb + 16 + 32 * j));
            const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(raw, m4),
                _mm256_loadu_si256((const __m256i *)(y + 64 * j)));
            const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4),
                _mm256_loadu_si256((const __m256i *)(y + 64 * j + 32)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(lo, _mm256_set1_epi16(sc[2 * j])));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(hi, _mm256_set1_epi16(sc[2 * j + 1])));
        }
        const __m128i mins = _mm_shuffle_epi8(_mm_set_epi32(0, 0, (int)mw[1], (int)mw[0]), pairs);
        const __m256i mterm = _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_cvtepu8_epi32(mins), _mm256_loadu_si256((const __m256i *)(bsums + b * 16))),
            _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(mins, 8)),
                _mm256_loadu_si256((const __m256i *)(bsums + b * 16 + 8))));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(f16_to_f32(wb) * d[b]), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mterm), _mm256_set1_ps(f16_to_f32(wb + 2) * d[b]), accm);
    }
    return hsum256(acc) - hsum256(accm);
}

/*
 * Q6_K x Q8_K: unsigned 6-bit weights (w + 32) by pmaddubsw (2 * 63 * 127 fits), pmaddwd by the group scales; the
 * -32 per lane through the bsums (16 group scales times their bsums, in two vectors), so that each block adds one
 * vector of exact integer lanes, scaled in float; one horizontal sum per row at the end.
 */
static inline float dot_q6_k(const uint8_t *w, int nb, const int8_t *qs, const float *d, const int32_t *bsums)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++)
        {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h));
            const int8_t *y = qs + b * QK_K + 128 * h;
            const int8_t *s = sc + 8 * h;
            const __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            const __m256i q2 = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
            const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q1,
                _mm256_loadu_si256((const __m256i *)y)), scale16(s[0], s[1])));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q2,
                _mm256_loadu_si256((const __m256i *)(y + 32))), scale16(s[2], s[3])));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q3,
                _mm256_loadu_si256((const __m256i *)(y + 64))), scale16(s[4], s[5])));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q4,
                _mm256_loadu_si256((const __m256i *)(y + 96))), scale16(s[6], s[7])));
        }
        const __m128i scv = _mm_loadu_si128((const __m128i *)sc);
        const __m256i offset = _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_cvtepi8_epi32(scv), _mm256_loadu_si256((const __m256i *)(bsums + b * 16))),
            _mm256_mullo_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(scv, 8)),
                _mm256_loadu_si256((const __m256i *)(bsums + b * 16 + 8))));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, _mm256_slli_epi32(offset, 5))),
            _mm256_set1_ps(f16_to_f32(wb + 208) * d[b]), acc);
    }
    return hsum256(acc);
}

/* As the VNNI set's q4_k_tile and q6_k_tile (see there), with this set's dot_q4_k and dot_q6_k steps. */

static inline __attribute__((always_inline)) void q4_k_tile(const int TN, const uint8_t *w, int nb, int cols,
    const int8_t *qs, const float *d, const int32_t *bsums, float *out, int32_t outStride)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m128i pairs = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const int nbs = cols / 16;
    __m256 acc[KQ_TOKENS];
    __m256 accm[KQ_TOKENS];
    for (int t = 0; t < TN; t++)
    {
        acc[t] = _mm256_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q4_K_BYTES;
        uint32_t scw[2];
        uint32_t mw[2];
        q4_k_scales_words(wb + 4, scw, mw);
        const uint8_t *sc = (const uint8_t *)scw;
        __m256i sumi[KQ_TOKENS];
        for (int t = 0; t < TN; t++)
        {
            sumi[t] = _mm256_setzero_si256();
        }
        for (int j = 0; j < 4; j++)
        {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(wb + 16 + 32 * j));
            const __m256i ulo = _mm256_and_si256(raw, m4);
            const __m256i uhi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            const __m256i slo = _mm256_set1_epi16(sc[2 * j]);
            const __m256i shi = _mm256_set1_epi16(sc[2 * j + 1]);
            for (int t = 0; t < TN; t++)
            {
                const int8_t *y = qs + (int64_t)t * cols + b * QK_K + 64 * j;
                const __m256i lo = _mm256_maddubs_epi16(ulo, _mm256_loadu_si256((const __m256i *)y));
                const __m256i hi = _mm256_maddubs_epi16(uhi, _mm256_loadu_si256((const __m256i *)(y + 32)));
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(lo, slo));
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(hi, shi));
            }
        }
        const __m128i mins = _mm_shuffle_epi8(_mm_set_epi32(0, 0, (int)mw[1], (int)mw[0]), pairs);
        const __m256i mlo = _mm256_cvtepu8_epi32(mins);
        const __m256i mhi = _mm256_cvtepu8_epi32(_mm_srli_si128(mins, 8));
        const float wd = f16_to_f32(wb);
        const float wm = f16_to_f32(wb + 2);
        for (int t = 0; t < TN; t++)
        {
            const float dt = d[(int64_t)t * nb + b];
            const int32_t *bs = bsums + (int64_t)t * nbs + b * 16;
            const __m256i mterm = _mm256_add_epi32(_mm256_mullo_epi32(mlo, _mm256_loadu_si256((const __m256i *)bs)),
                _mm256_mullo_epi32(mhi, _mm256_loadu_si256((const __m256i *)(bs + 8))));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[t]), _mm256_set1_ps(wd * dt), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mterm), _mm256_set1_ps(wm * dt), accm[t]);
        }
    }
    for (int t = 0; t < TN; t++)
    {
        out[(int64_t)t * outStride] = hsum256(acc[t]) - hsum256(accm[t]);
    }
}

static inline __attribute__((always_inline)) void q6_k_tile(const int TN, const uint8_t *w, int nb, int cols,
    const int8_t *qs, const float *d, const int32_t *bsums, float *out, int32_t outStride)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    const int nbs = cols / 16;
    __m256 acc[KQ_TOKENS];
    for (int t = 0; t < TN; t++)
    {
        acc[t] = _mm256_setzero_ps();
    }
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q6_K_BYTES;
        const int8_t *sc = (const int8_t *)(wb + 192);
        __m256i sumi[KQ_TOKENS];
        for (int t = 0; t < TN; t++)
        {
            sumi[t] = _mm256_setzero_si256();
        }
        for (int h = 0; h < 2; h++)
        {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(wb + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h));
            const int8_t *s = sc + 8 * h;
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30))};
            const __m256i k[4] = {scale16(s[0], s[1]), scale16(s[2], s[3]), scale16(s[4], s[5]), scale16(s[6], s[7])};
            for (int t = 0; t < TN; t++)
            {
                const int8_t *y = qs + (int64_t)t * cols + b * QK_K + 128 * h;
                for (int i = 0; i < 4; i++)
                {
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[i],
                        _mm256_loadu_si256((const __m256i *)(y + 32 * i))), k[i]));
                }
            }
        }
        const __m128i scv = _mm_loadu_si128((const __m128i *)sc);
        const __m256i slo = _mm256_cvtepi8_epi32(scv);
        const __m256i shi = _mm256_cvtepi8_epi32(_mm_srli_si128(scv, 8));
        const float ws = f16_to_f32(wb + 208);
        for (int t = 0; t < TN; t++)
        {
            const int32_t *bs = bsums + (int64_t)t * nbs + b * 16;
            const __m256i offset = _mm256_add_epi32(_mm256_mullo_epi32(slo, _mm256_loadu_si256((const __m256i *)bs)),
                _mm256_mullo_epi32(shi, _mm256_loadu_si256((const __m256i *)(bs + 8))));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[t], _mm256_slli_epi32(offset, 5))),
                _mm256_set1_ps(ws * d[(int64_t)t * nb + b]), acc[t]);
        }
    }
    for (int t = 0; t < TN; t++)
    {
        out[(int64_t)t * outStride] = hsum256(acc[t]);
    }
}

#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Matrix x activations: rows of w against tokens of activations
 * ------------------------------------------------------------------------------------------------------------- */

#define PRODUCT(type, block, group)                                                                                  \
    void EXPORT(mv_##type)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,        \
        const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outOffset,       \
        int32_t outStride)                                                                                            \
    {                                                                                                                 \
        const int nb = cols / (block);                                                                                \
        w += wOffset;                                                                                                 \
        out += outOffset;                                                                                             \
        for (int r = 0; r < rows; r++)                                                                                \
        {                                                                                                             \
            const uint8_t *wr = w + r * rowBytes;                                                                     \
            for (int t = 0; t < tokens; t++)                                                                          \
            {                                                                                                         \
                out[(int64_t)t * outStride + r] = dot_##type(wr, nb, qs + (int64_t)t * cols, d + (int64_t)t * nb,     \
                    aux + (int64_t)t * (cols / (group)));                                                             \
            }                                                                                                         \
        }                                                                                                             \
    }

PRODUCT(q4_0, QK8_0, 4)
PRODUCT(q8_0, QK8_0, 4)
PRODUCT(q4_k, QK_K, 16)
PRODUCT(q6_k, QK_K, 16)

/*
 * A batched product that is the dot per (row, token) (mv_<type> over the tokens), so that a token gets the same bits
 * in a batch as alone: exported as mm_<type> where the set has no faster batched kernel with those bits.
 */
#define BATCHED_AS_DOTS(type)                                                                                         \
    void EXPORT(mm_##type)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,        \
        const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outOffset,       \
        int32_t outStride)                                                                                            \
    {                                                                                                                 \
        EXPORT_NAME(mv_##type)(w, wOffset, rowBytes, rows, cols, qs, d, aux, tokens, out, outOffset, outStride);     \
    }

/*
 * The K-quants, batched: tiles of up to KQ_TOKENS tokens against one row (q4_k_tile, q6_k_tile: a super-block unpacked
 * once per tile, each token dot_<type>'s steps, so the same bits alone and in a batch), KQ_ROWS rows at a time for
 * every tile, so that a prompt's activations are read once per KQ_ROWS rows (from L2) and not once per row, and the
 * rows' weights stay in L2 across the tiles.
 */
#define KQ_ROWS 32
#define KQ_BATCHED(type)                                                                                              \
    void EXPORT(mm_##type)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,        \
        const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outOffset,       \
        int32_t outStride)                                                                                            \
    {                                                                                                                 \
        const int nb = cols / QK_K;                                                                                   \
        w += wOffset;                                                                                                 \
        out += outOffset;                                                                                             \
        for (int r0 = 0; r0 < rows; r0 += KQ_ROWS)                                                                   \
        {                                                                                                             \
            const int r1 = rows - r0 < KQ_ROWS ? rows : r0 + KQ_ROWS;                                                 \
            for (int t0 = 0; t0 < tokens; t0 += KQ_TOKENS)                                                            \
            {                                                                                                         \
                const int8_t *y = qs + (int64_t)t0 * cols;                                                            \
                const float *dy = d + (int64_t)t0 * nb;                                                               \
                const int32_t *bs = aux + (int64_t)t0 * (cols / 16);                                                  \
                const int tn = tokens - t0 < KQ_TOKENS ? tokens - t0 : KQ_TOKENS;                                     \
                for (int r = r0; r < r1; r++)                                                                         \
                {                                                                                                     \
                    const uint8_t *wr = w + r * rowBytes;                                                             \
                    float *o = out + (int64_t)t0 * outStride + r;                                                     \
                    switch (tn)                                                                                       \
                    {                                                                                                 \
                    case 1: type##_tile(1, wr, nb, cols, y, dy, bs, o, outStride); break;                             \
                    case 2: type##_tile(2, wr, nb, cols, y, dy, bs, o, outStride); break;                             \
                    case 3: type##_tile(3, wr, nb, cols, y, dy, bs, o, outStride); break;                             \
                    default: type##_tile(KQ_TOKENS, wr, nb, cols, y, dy, bs, o, outStride); break;                    \
                    }                                                                                                 \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }

KQ_BATCHED(q4_k)
KQ_BATCHED(q6_k)

/* ---------------------------------------------------------------------------------------------------------------
 * F16 weights against float activations (no activation quantization): the halves converted by F16C / AVX-512F.
 *
 * Every (row, token) pair is the same float chain whatever the number of tokens: two vector accumulators, acc0 over
 * the even and acc1 over the odd vectors of k (in steps of 2 x F16_V), one horizontal sum hsum_f(acc0 + acc1), then
 * the products after the last whole step added one by one. mv_f16 (one token) and mm_f16 (several) run that chain, so
 * a token gets the same bits alone and in a batch. A single token goes row by row (one stream of weights at a time
 * reads memory fastest here: 26 GB/s on one core against 21 GB/s for 4 rows interleaved); several tokens go in tiles
 * of rows x tokens whose accumulators stay in registers (per vector of k, R weight loads and T activation loads feed
 * R x T FMAs; mm_f16 below).
 * ------------------------------------------------------------------------------------------------------------- */
#if defined(__AVX512F__)
#define F16_V 16
#define F16_R 6
#define F16_T 2
#define F16_BR 6
#define F16_BT 4
typedef __m512 vf;
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_half(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline float hsum_f(vf a, vf b) { return _mm512_reduce_add_ps(_mm512_add_ps(a, b)); }
#else
#define F16_V 8
#define F16_R 2
#define F16_T 2
#define F16_BR 3
#define F16_BT 3
typedef __m256 vf;
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_half(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline float hsum_f(vf a, vf b) { return hsum256(_mm256_add_ps(a, b)); }
#endif

/*
 * R rows (w, rowBytes apart) x T tokens (x, cols apart) into out[t * outStride + r]; R and T are constants after
 * inlining, so the accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void f16_tile(const int R, const int T, const uint8_t *w,
    int64_t rowBytes, int cols, const float *x, float *out, int32_t outStride)
{
    vf acc[2][F16_R][F16_T];
    for (int h = 0; h < 2; h++)
    {
        for (int r = 0; r < R; r++)
        {
            for (int t = 0; t < T; t++)
            {
                acc[h][r][t] = vf_zero();
            }
        }
    }
    int k = 0;
    for (; k + 2 * F16_V <= cols; k += 2 * F16_V)
    {
        for (int h = 0; h < 2; h++)
        {
            const int kh = k + h * F16_V;
            vf wv[F16_R];
            for (int r = 0; r < R; r++)
            {
                wv[r] = vf_half(w + r * rowBytes + 2 * kh);
            }
            for (int t = 0; t < T; t++)
            {
                const vf xv = vf_load(x + (int64_t)t * cols + kh);
                for (int r = 0; r < R; r++)
                {
                    acc[h][r][t] = vf_fma(wv[r], xv, acc[h][r][t]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
    {
        for (int t = 0; t < T; t++)
        {
            float sum = hsum_f(acc[0][r][t], acc[1][r][t]);
            for (int i = k; i < cols; i++)
            {
                sum += f16_to_f32(w + r * rowBytes + 2 * i) * x[(int64_t)t * cols + i];
            }
            out[(int64_t)t * outStride + r] = sum;
        }
    }
}

/* R rows against every token: whole tiles of F16_T tokens, then the tokens left, in a tile of their own. */
static inline __attribute__((always_inline)) void f16_rows(const int R, const uint8_t *w, int64_t rowBytes, int cols,
    const float *x, int tokens, float *out, int32_t outStride)
{
    int t = 0;
    for (; t + F16_T <= tokens; t += F16_T)
    {
        f16_tile(R, F16_T, w, rowBytes, cols, x + (int64_t)t * cols, out + (int64_t)t * outStride, outStride);
    }
    const float *xt = x + (int64_t)t * cols;
    float *ot = out + (int64_t)t * outStride;
    switch (tokens - t)
    {
    case 1: f16_tile(R, 1, w, rowBytes, cols, xt, ot, outStride); break;
    default: break;
    }
}

/* out[outOffset + t * outStride + r] = W[r] . x[t * cols ..] for rows [0, rows) of w + wOffset and [0, tokens). */
void EXPORT(mv_f16)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols, const float *x,
    int32_t tokens, float *out, int32_t outOffset, int32_t outStride)
{
    w += wOffset;
    out += outOffset;
    for (int r = 0; r < rows; r++)
    {
        for (int t = 0; t < tokens; t++)
        {
            f16_tile(1, 1, w + r * rowBytes, rowBytes, cols, x + (int64_t)t * cols, out + (int64_t)t * outStride + r,
                outStride);
        }
    }
}

/* Bytes of activations and of weights that one pass of mm_f16 keeps in the L2 cache (1 MB per core here). */
#define F16_L2_ACTIVATIONS (384 * 1024)
#define F16_L2_WEIGHTS (192 * 1024)

/*
 * Rows of up to F16_KC values: tiles of F16_R rows x F16_T tokens over whole rows, each pair's chain as in mv_f16
 * (acc0 and acc1 side by side). One core, 128 tokens, in cache: 6 x 2 tiles 77 G weight-tokens/s, 4 x 3 74, 3 x 4 60,
 * 2 x 6 41 (the Java tiled product it replaced: about 45). The rows are taken in blocks of about F16_L2_WEIGHTS bytes and, per block, the tokens in blocks of about F16_L2_ACTIVATIONS bytes,
 * so that both stay in L2 while the tiles reuse them: without the token blocks the activations of a long row (5,632
 * values x 128 tokens, 2.8 MB) stream from L3 for every 4 rows, measured at 46-56 G weight-tokens/s on one core against
 * 72-75 for 2,048 values.
 */
static void f16_whole_rows(const uint8_t *w, int64_t rowBytes, int32_t rows, int32_t cols, const float *x, int32_t tokens,
    float *out, int32_t outStride)
{
    int rb = (int)(F16_L2_WEIGHTS / rowBytes) / F16_R * F16_R;
    rb = rb < F16_R ? F16_R : rb;
    int tb = (int)(F16_L2_ACTIVATIONS / (4 * (int64_t)cols)) / F16_T * F16_T;
    tb = tb < F16_T ? F16_T : tb;
    for (int r0 = 0; r0 < rows; r0 += rb)
    {
        const int r1 = r0 + rb < rows ? r0 + rb : rows;
        for (int t0 = 0; t0 < tokens; t0 += tb)
        {
            const int tn = tokens - t0 < tb ? tokens - t0 : tb;
            const float *xb = x + (int64_t)t0 * cols;
            float *ob = out + (int64_t)t0 * outStride;
            int r = r0;
            for (; r + F16_R <= r1; r += F16_R)
            {
                f16_rows(F16_R, w + r * rowBytes, rowBytes, cols, xb, tn, ob + r, outStride);
            }
            for (; r < r1; r++)
            {
                f16_rows(1, w + r * rowBytes, rowBytes, cols, xb, tn, ob + r, outStride);
            }
        }
    }
}

/*
 * Longer rows (the down projection's 5,632 values): each (row, token) pair's chain as mv_f16 runs it, in tiles of F16_BR
 * rows x F16_BT tokens, but the two accumulators of a pair one after the other (acc0 over k, then acc1): the same FMAs in the
 * same order per accumulator, so the same bits, with half the registers per pair and so twice the tokens per tile.
 * k is taken in blocks of F16_KC: a tile's F16_BR weight rows of one block stay in L1 while it runs against the tokens of
 * its token block, and the accumulators of the (row, token) pairs are kept between k blocks in a state buffer (two
 * vectors a pair). Rows in blocks of F16_KRB and tokens in blocks of F16_KTB, so that the state stays in L1/L2.
 * A tile reads each vector of activations in two passes (acc0's k, then acc1's), so activations that do not start on a
 * cache line cost a quarter of the speed (split loads; C harness, 256 x 2,048 x 128: 84 G/s aligned, 61-62 at offsets of
 * 16 and 24 bytes): the caller passes them 64-byte aligned (MatOps copies them off the heap once per product).
 * One core, 128 tokens, in L2, G weight-tokens/s (C harness, the whole-row tiles beside it): 1,020 x 5,632 (the down
 * projection of a thread's half) 79-85 against 58-70 (the six 11 KB rows of a whole-row tile do not fit in L1).
 */
#define F16_KRB (4 * F16_BR)
#define F16_KTB (8 * F16_BT)
#define F16_KC 2048

/*
 * R rows x T tokens over k in [k0, k1) (k1 a multiple of 2 x F16_V, or the last whole step): the pairs' accumulators
 * start at zero (first) or from state, and go back to state, or (last) are summed into out with the tail past k1.
 */
static inline __attribute__((always_inline)) void f16_block(const int R, const int T, const uint8_t *w,
    int64_t rowBytes, int cols, int k0, int k1, const float *x, vf *state, int stateStride, int first, int last,
    float *out, int32_t outStride)
{
    for (int h = 0; h < 2; h++)
    {
        vf acc[F16_BR][F16_BT];
        for (int r = 0; r < R; r++)
        {
            for (int t = 0; t < T; t++)
            {
                acc[r][t] = first ? vf_zero() : state[(r * stateStride + t) * 2 + h];
            }
        }
        for (int k = k0 + h * F16_V; k < k1; k += 2 * F16_V)
        {
            vf wv[F16_BR];
            for (int r = 0; r < R; r++)
            {
                wv[r] = vf_half(w + r * rowBytes + 2 * k);
            }
            for (int t = 0; t < T; t++)
            {
                const vf xv = vf_load(x + (int64_t)t * cols + k);
                for (int r = 0; r < R; r++)
                {
                    acc[r][t] = vf_fma(wv[r], xv, acc[r][t]);
                }
            }
        }
        for (int r = 0; r < R; r++)
        {
            for (int t = 0; t < T; t++)
            {
                if (last && h == 1)
                {
                    float sum = hsum_f(state[(r * stateStride + t) * 2], acc[r][t]);
                    for (int i = k1; i < cols; i++)
                    {
                        sum += f16_to_f32(w + r * rowBytes + 2 * i) * x[(int64_t)t * cols + i];
                    }
                    out[(int64_t)t * outStride + r] = sum;
                }
                else
                {
                    state[(r * stateStride + t) * 2 + h] = acc[r][t];
                }
            }
        }
    }
}

/* R rows against tokens [0, tokens) of a token block: whole tiles of F16_BT tokens, then the rest in a tile of its own. */
static inline __attribute__((always_inline)) void f16_block_rows(const int R, const uint8_t *w, int64_t rowBytes,
    int cols, int k0, int k1, const float *x, int tokens, vf *state, int first, int last, float *out, int32_t outStride)
{
    int t = 0;
    for (; t + F16_BT <= tokens; t += F16_BT)
    {
        f16_block(R, F16_BT, w, rowBytes, cols, k0, k1, x + (int64_t)t * cols, state + t * 2, F16_KTB, first, last,
            out + (int64_t)t * outStride, outStride);
    }
    const float *xt = x + (int64_t)t * cols;
    vf *st = state + t * 2;
    float *ot = out + (int64_t)t * outStride;
    switch (tokens - t)
    {
    case 1: f16_block(R, 1, w, rowBytes, cols, k0, k1, xt, st, F16_KTB, first, last, ot, outStride); break;
    case 2: f16_block(R, 2, w, rowBytes, cols, k0, k1, xt, st, F16_KTB, first, last, ot, outStride); break;
#if F16_BT > 3
    case 3: f16_block(R, 3, w, rowBytes, cols, k0, k1, xt, st, F16_KTB, first, last, ot, outStride); break;
#endif
    default: break;
    }
}

static void f16_kblocks(const uint8_t *w, int64_t rowBytes, int32_t rows, int32_t cols, const float *x, int32_t tokens,
    float *out, int32_t outStride)
{
    vf state[F16_KRB * F16_KTB * 2];
    const int kEnd = cols / (2 * F16_V) * (2 * F16_V);
    for (int r0 = 0; r0 < rows; r0 += F16_KRB)
    {
        const int r1 = r0 + F16_KRB < rows ? r0 + F16_KRB : rows;
        for (int t0 = 0; t0 < tokens; t0 += F16_KTB)
        {
            const int tn = tokens - t0 < F16_KTB ? tokens - t0 : F16_KTB;
            const float *xb = x + (int64_t)t0 * cols;
            float *ob = out + (int64_t)t0 * outStride;
            int k0 = 0;
            do
            {
                const int k1 = k0 + F16_KC < kEnd ? k0 + F16_KC : kEnd;
                const int first = k0 == 0, last = k1 == kEnd;
                int r = r0;
                for (; r + F16_BR <= r1; r += F16_BR)
                {
                    f16_block_rows(F16_BR, w + r * rowBytes, rowBytes, cols, k0, k1, xb, tn,
                        state + (r - r0) * F16_KTB * 2, first, last, ob + r, outStride);
                }
                /* the rows left, in a tile of their own (one row at a time is load-bound: 4x slower per row) */
                const uint8_t *wr = w + r * rowBytes;
                vf *sr = state + (r - r0) * F16_KTB * 2;
                switch (r1 - r)
                {
                case 1: f16_block_rows(1, wr, rowBytes, cols, k0, k1, xb, tn, sr, first, last, ob + r, outStride); break;
                case 2: f16_block_rows(2, wr, rowBytes, cols, k0, k1, xb, tn, sr, first, last, ob + r, outStride); break;
#if F16_BR > 3
                case 3: f16_block_rows(3, wr, rowBytes, cols, k0, k1, xb, tn, sr, first, last, ob + r, outStride); break;
                case 4: f16_block_rows(4, wr, rowBytes, cols, k0, k1, xb, tn, sr, first, last, ob + r, outStride); break;
                case 5: f16_block_rows(5, wr, rowBytes, cols, k0, k1, xb, tn, sr, first, last, ob + r, outStride); break;
#endif
                default: break;
                }
                k0 = k1;
            }
            while (k0 < kEnd);
        }
    }
}

/*
 * The batched form: rows of up to F16_KC values in whole-row tiles (f16_whole_rows), longer rows in k blocks
 * (f16_kblocks). Two threads, one layer of 1.1B's shapes, 128 tokens, shares of rows as MatOps gives them, G weight-
 * tokens/s of both cores (C harness, one process, alternated): whole-row tiles 145-157 on 2,048 values against 138-146
 * for k blocks, but 108-118 on the 5,632 of the down projection against 132-137.
 */
void EXPORT(mm_f16)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols, const float *x,
    int32_t tokens, float *out, int32_t outOffset, int32_t outStride)
{
    if (cols <= F16_KC)
    {
        f16_whole_rows(w + wOffset, rowBytes, rows, cols, x, tokens, out + outOffset, outStride);
    }
    else
    {
        f16_kblocks(w + wOffset, rowBytes, rows, cols, x, tokens, out + outOffset, outStride);
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Float weights against several tokens (prefill): the Java blocked product's definition (MatOps), natively: F32 and
 * F16 weights in place, other types as the float column blocks the Java path dequantizes them into. Each (row,
 * token) pair is one chain from zero, one FMA per k in k order, in one vector lane: acc[i * tp + t] = sum over k of
 * w[i][k] * xt[k * tp + t], with the activations packed transposed (xt, tp tokens padded to whole vectors). A lane's
 * chain does not depend on the vector width, the tile or the k blocks, so the bits are those of the Java path.
 * Tiles of F32_R rows x F32_V vectors of tokens: per k, F32_R weight broadcasts and F32_V activation loads feed
 * F32_R x F32_V FMAs, the accumulators in registers; k in blocks of F32_KB so that a tile's weights stay in L1 and the
 * block's activations in L2.
 * ------------------------------------------------------------------------------------------------------------- */
#if defined(__AVX512F__)
#define F32_R 6
#define F32_V 4
#else
#define F32_R 6
#define F32_V 2
#endif
#define F32_KB 256

static inline __attribute__((always_inline)) vf vf_bcast(const float *p)
{
#if defined(__AVX512F__)
    return _mm512_set1_ps(*p);
#else
    return _mm256_set1_ps(*p);
#endif
}

static inline __attribute__((always_inline)) void vf_store(float *p, vf v)
{
#if defined(__AVX512F__)
    _mm512_storeu_ps(p, v);
#else
    _mm256_storeu_ps(p, v);
#endif
}

/* R rows x V vectors of tokens over k in [k0, k1): the chains continue from acc (first: from zero). */
static inline __attribute__((always_inline)) void f32_panel_tile(const int R, const int V, const float *w,
    int64_t rowFloats, int k0, int k1, const float *xt, int tp, float *acc, int first)
{
    vf c[F32_R][F32_V];
    for (int r = 0; r < R; r++)
    {
        for (int v = 0; v < V; v++)
        {
            c[r][v] = first ? vf_zero() : vf_load(acc + (int64_t)r * tp + v * F16_V);
        }
    }
    for (int k = k0; k < k1; k++)
    {
        vf xv[F32_V];
        for (int v = 0; v < V; v++)
        {
            xv[v] = vf_load(xt + (int64_t)k * tp + v * F16_V);
        }
        for (int r = 0; r < R; r++)
        {
            const vf b = vf_bcast(w + r * rowFloats + k);
            for (int v = 0; v < V; v++)
            {
                c[r][v] = vf_fma(xv[v], b, c[r][v]);
            }
        }
    }
    for (int r = 0; r < R; r++)
    {
        for (int v = 0; v < V; v++)
        {
            vf_store(acc + (int64_t)r * tp + v * F16_V, c[r][v]);
        }
    }
}

/* R rows against every vector of tokens: whole tiles of F32_V vectors, then the vectors left in a tile of their own. */
static inline __attribute__((always_inline)) void f32_panel_rows(const int R, const float *w, int64_t rowFloats,
    int k0, int k1, const float *xt, int tp, float *acc, int first)
{
    const int vectors = tp / F16_V;
    int v = 0;
    for (; v + F32_V <= vectors; v += F32_V)
    {
        f32_panel_tile(R, F32_V, w, rowFloats, k0, k1, xt + v * F16_V, tp, acc + v * F16_V, first);
    }
    const float *xv = xt + v * F16_V;
    float *av = acc + v * F16_V;
    switch (vectors - v)
    {
    case 1: f32_panel_tile(R, 1, w, rowFloats, k0, k1, xv, tp, av, first); break;
    case 2: f32_panel_tile(R, 2, w, rowFloats, k0, k1, xv, tp, av, first); break;
#if F32_V > 3
    case 3: f32_panel_tile(R, 3, w, rowFloats, k0, k1, xv, tp, av, first); break;
#endif
    default: break;
    }
}

/*
 * acc[i * tp + t] = sum over k < cols of W[i][k] * xt[k * tp + t] for rows [0, rows) of w + wOffset (rowBytes apart;
 * E = 4: F32, E = 2: F16, each tile's rows of a k block converted once into a float buffer that stays in L1) and t < tp
 * (a multiple of the vector width, F16_V floats); with accumulate, the chains continue from acc (the Java path's
 * dequantized column blocks, one call per block).
 */
static inline __attribute__((always_inline)) void panel_impl(const int E, const uint8_t *w, int64_t rowBytes,
    int32_t rows, int32_t cols, const float *xt, int32_t tp, float *acc, int32_t accumulate)
{
    float buf[F32_R * F32_KB] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < cols; k0 += F32_KB)
    {
        const int k1 = k0 + F32_KB < cols ? k0 + F32_KB : cols;
        const int first = k0 == 0 && !accumulate;
        for (int r = 0; r < rows; r += F32_R)
        {
            const int n = rows - r < F32_R ? rows - r : F32_R;
            /*
             * the weights of the next tile (the next rows, or the first rows of the next k block) toward L2 while this
             * one runs: each row is one of up to 64 streams advanced a block at a time, which the hardware prefetchers
             * do not follow. C harness, one core, 128 tokens, G weight-tokens/s: F16 weights of 64-92 MB (cold) 89-91
             * without, 93-94 with; in L3 99 without. Into L1 (T0) it is worse: rows 4 KB apart all map to the same
             * L1 sets and evict the activations (47-52).
             */
            const int rn = r + F32_R < rows ? r + F32_R : 0;
            const int kn0 = r + F32_R < rows ? k0 : k1;
            if (kn0 < cols)
            {
                const int kn1 = kn0 + F32_KB < cols ? kn0 + F32_KB : cols;
                const int nn = rows - rn < F32_R ? rows - rn : F32_R;
                for (int i = 0; i < nn; i++)
                {
                    const uint8_t *p = w + (rn + i) * rowBytes + (int64_t)E * kn0;
                    for (int64_t b = 0; b < (int64_t)E * (kn1 - kn0); b += 64)
                    {
                        _mm_prefetch((const char *)(p + b), _MM_HINT_T2);
                    }
                }
            }
            const float *wr;
            int64_t stride;
            int ka, kb;
            const float *xk;
            if (E == 4)
            {
                wr = (const float *)(w + r * rowBytes);
                stride = rowBytes / 4;
                ka = k0;
                kb = k1;
                xk = xt;
            }
            else
            {
                for (int i = 0; i < n; i++)
                {
                    const uint8_t *src = w + (r + i) * rowBytes + 2 * (int64_t)k0;
                    int k = 0;
                    for (; k + F16_V <= k1 - k0; k += F16_V)
                    {
                        vf_store(buf + i * F32_KB + k, vf_half(src + 2 * k));
                    }
                    for (; k < k1 - k0; k++)
                    {
                        buf[i * F32_KB + k] = f16_to_f32(src + 2 * k);
                    }
                }
                wr = buf;
                stride = F32_KB;
                ka = 0;
                kb = k1 - k0;
                xk = xt + (int64_t)k0 * tp;
            }
            float *ar = acc + (int64_t)r * tp;
            switch (n)
            {
            case F32_R: f32_panel_rows(F32_R, wr, stride, ka, kb, xk, tp, ar, first); break;
            case 1: f32_panel_rows(1, wr, stride, ka, kb, xk, tp, ar, first); break;
            case 2: f32_panel_rows(2, wr, stride, ka, kb, xk, tp, ar, first); break;
#if F32_R > 3
            case 3: f32_panel_rows(3, wr, stride, ka, kb, xk, tp, ar, first); break;
#endif
#if F32_R > 4
            case 4: f32_panel_rows(4, wr, stride, ka, kb, xk, tp, ar, first); break;
#endif
#if F32_R > 5
            case 5: f32_panel_rows(5, wr, stride, ka, kb, xk, tp, ar, first); break;
#endif
            default: break;
            }
        }
    }
}

void EXPORT(mm_f32_panel)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,
    const float *xt, int32_t tp, float *acc, int32_t accumulate)
{
    panel_impl(4, w + wOffset, rowBytes, rows, cols, xt, tp, acc, accumulate);
}

void EXPORT(mm_f16_panel)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,
    const float *xt, int32_t tp, float *acc, int32_t accumulate)
{
    panel_impl(2, w + wOffset, rowBytes, rows, cols, xt, tp, acc, accumulate);
}

#if USE_VNNI
/*
 * Batched forms (several tokens per pass over the weights) of Q4_0 and Q8_0: a group of 4 rows is unpacked once into
 * unsigned bytes in activation order (ub) and per-lane block scales (dw: for each pair of blocks 16 floats,
 * [d(b) x 8 | d(b+1) x 8]), then every token of a block of MM_TOKENS (whose activations stay in L2) is multiplied
 * with the 4 rows: one activation load feeds 4 vpdpbusd, and the 4 accumulators stay in registers.
 */
#define MM_ROWS 4
#define MM_TOKENS 64

static void unpack_q4_0(const uint8_t *w, int nb, uint8_t *ub, float *dw)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q4_0_BYTES;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(wb + 2));
        _mm_storeu_si128((__m128i *)(ub + b * 32), _mm_and_si128(raw, m4));
        _mm_storeu_si128((__m128i *)(ub + b * 32 + 16), _mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        _mm256_storeu_ps(dw + b * 8, _mm256_set1_ps(f16_to_f32(wb)));
    }
}

static void unpack_q8_0(const uint8_t *w, int nb, uint8_t *ub, float *dw)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int b = 0; b < nb; b++)
    {
        const uint8_t *wb = w + b * Q8_0_BYTES;
        _mm256_storeu_si256((__m256i *)(ub + b * 32),
            _mm256_xor_si256(flip, _mm256_loadu_si256((const __m256i *)(wb + 2))));
        _mm256_storeu_ps(dw + b * 8, _mm256_set1_ps(f16_to_f32(wb)));
    }
}

/*
 * One token against R unpacked rows (R = 4 or 1, a constant after inlining); nb is even. The float accumulation
 * follows dot_q4_0/dot_q8_0 step for step (two accumulators taking alternate pairs of blocks, their sum reduced, then
 * the blocks after the last group of four added one by one), so a row gives the same bits batched as alone: a
 * sequence's keys and values do not depend on whether it was prefilled in a batch or decoded token by token (a
 * request moved to another node and prefilled again continues with the same tokens).
 */
static inline __attribute__((always_inline)) void mm_token(const int R, const uint8_t *ub, const float *dw, int cols,
    int nb, const int8_t *y, const float *dx, const int32_t *aux, float *out)
{
    __m512 acc0[MM_ROWS];
    __m512 acc1[MM_ROWS];
    for (int r = 0; r < R; r++)
    {
        acc0[r] = _mm512_setzero_ps();
        acc1[r] = _mm512_setzero_ps();
    }
    const int groups = nb / 4;
    for (int g = 0; g < groups; g++)
    {
        const int p = 2 * g;
        const __m512i yv0 = _mm512_loadu_si512(y + 64 * p);
        const __m512i av0 = _mm512_loadu_si512(aux + 16 * p);
        const __m512 dxv0 = scale2(dx[2 * p], dx[2 * p + 1]);
        const __m512i yv1 = _mm512_loadu_si512(y + 64 * (p + 1));
        const __m512i av1 = _mm512_loadu_si512(aux + 16 * (p + 1));
        const __m512 dxv1 = scale2(dx[2 * p + 2], dx[2 * p + 3]);
        for (int r = 0; r < R; r++)
        {
            const __m512i s0 = _mm512_dpbusd_epi32(av0, _mm512_loadu_si512(ub + (size_t)r * cols + 64 * p), yv0);
            acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0),
                _mm512_mul_ps(_mm512_loadu_ps(dw + (size_t)r * nb * 8 + 16 * p), dxv0), acc0[r]);
            const __m512i s1 = _mm512_dpbusd_epi32(av1, _mm512_loadu_si512(ub + (size_t)r * cols + 64 * (p + 1)),
                yv1);
            acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1),
                _mm512_mul_ps(_mm512_loadu_ps(dw + (size_t)r * nb * 8 + 16 * (p + 1)), dxv1), acc1[r]);
        }
    }
    for (int r = 0; r < R; r++)
    {
        float sum = hsum512(_mm512_add_ps(acc0[r], acc1[r]));
        for (int b = groups * 4; b < nb; b++)
        {
            const __m256i s = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(aux + b * 8)),
                _mm256_loadu_si256((const __m256i *)(ub + (size_t)r * cols + 32 * b)),
                _mm256_loadu_si256((const __m256i *)(y + 32 * b)));
            const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            const int32_t si = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
            sum += (float)si * (dw[(size_t)r * nb * 8 + 8 * b] * dx[b]);
        }
        out[r] = sum;
    }
}

typedef void (*unpack_fn)(const uint8_t *, int, uint8_t *, float *);

static void mm_q8_0_paired(unpack_fn unpack, const uint8_t *w, int64_t rowBytes, int32_t rows, int32_t cols,
    const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outStride)
{
    const int nb = cols / QK8_0;
    uint8_t *ub = _mm_malloc((size_t)MM_ROWS * cols, 64);
    float *dw = _mm_malloc((size_t)MM_ROWS * nb * 8 * sizeof(float), 64);
    for (int t0 = 0; t0 < tokens; t0 += MM_TOKENS)
    {
        const int t1 = t0 + MM_TOKENS < tokens ? t0 + MM_TOKENS : tokens;
        int R;
        for (int r0 = 0; r0 < rows; r0 += R)
        {
            R = rows - r0 >= MM_ROWS ? MM_ROWS : 1; /* the last rows one at a time */
            for (int r = 0; r < R; r++)
            {
                unpack(w + (r0 + r) * rowBytes, nb, ub + (size_t)r * cols, dw + (size_t)r * nb * 8);
            }
            for (int t = t0; t < t1; t++)
            {
                float o[MM_ROWS];
                const int8_t *y = qs + (int64_t)t * cols;
                const float *dx = d + (int64_t)t * nb;
                const int32_t *a = aux + (int64_t)t * (cols / 4);
                if (R == MM_ROWS)
                {
                    mm_token(MM_ROWS, ub, dw, cols, nb, y, dx, a, o);
                }
                else
                {
                    mm_token(1, ub, dw, cols, nb, y, dx, a, o);
                }
                for (int r = 0; r < R; r++)
                {
                    out[(int64_t)t * outStride + r0 + r] = o[r];
                }
            }
        }
    }
    _mm_free(ub);
    _mm_free(dw);
}

#define MM(type)                                                                                                      \
    void EXPORT(mm_##type)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,        \
        const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outOffset,       \
        int32_t outStride)                                                                                            \
    {                                                                                                                 \
        if (cols % 64 != 0)                                                                                           \
        {                                                                                                             \
            EXPORT_NAME(mv_##type)(w, wOffset, rowBytes, rows, cols, qs, d, aux, tokens, out, outOffset, outStride); \
            return;                                                                                                   \
        }                                                                                                             \
        mm_q8_0_paired(unpack_##type, w + wOffset, rowBytes, rows, cols, qs, d, aux, tokens, out + outOffset,         \
            outStride);                                                                                               \
    }

MM(q4_0)
MM(q8_0)
#else /* AVX2 (also the AVX-512 BW build) */
/*
 * Batched Q8_0 whose every (row, token) is dot_q8_0's chain, so that a token gets the same bits in a batch as alone (a
 * request prefilled again after a move must get the keys and values its decode steps had): per block the product
 * |w| x (y with w's sign) as pmaddubsw + pmaddwd, scaled by mul(float(p), f16(w_d) x y_d), added into acc0 for even and
 * acc1 for odd blocks, one hsum256(acc0 + acc1) at the end. Tiles of 2 rows x 2 tokens share each row's |w| and each
 * token's activations across the tile (8 accumulators); the rows and tokens left over take dot_q8_0 itself.
 */
static inline __attribute__((always_inline)) void q8_tile(const uint8_t *w0, const uint8_t *w1, int nb,
    const int8_t *y0, const int8_t *y1, const float *d0, const float *d1, float *out, int32_t outStride)
{
    __m256 acc[2][2][2];
    for (int r = 0; r < 2; r++)
    {
        for (int t = 0; t < 2; t++)
        {
            acc[r][t][0] = _mm256_setzero_ps();
            acc[r][t][1] = _mm256_setzero_ps();
        }
    }
    const uint8_t *wr[2] = {w0, w1};
    const int8_t *yt[2] = {y0, y1};
    const float *dt[2] = {d0, d1};
    for (int b = 0; b < nb; b++)
    {
        __m256i v[2];
        __m256i a[2];
        float sw[2];
        for (int r = 0; r < 2; r++)
        {
            const uint8_t *wb = wr[r] + b * Q8_0_BYTES;
            v[r] = _mm256_loadu_si256((const __m256i *)(wb + 2));
            a[r] = _mm256_abs_epi8(v[r]);
            sw[r] = f16_to_f32(wb);
        }
        for (int t = 0; t < 2; t++)
        {
            const __m256i y = _mm256_loadu_si256((const __m256i *)(yt[t] + b * QK8_0));
            for (int r = 0; r < 2; r++)
            {
                const __m256 x = _mm256_mul_ps(q8_block(a[r], v[r], y), _mm256_set1_ps(sw[r] * dt[t][b]));
                acc[r][t][b & 1] = _mm256_add_ps(acc[r][t][b & 1], x);
            }
        }
    }
    for (int r = 0; r < 2; r++)
    {
        for (int t = 0; t < 2; t++)
        {
            out[(int64_t)t * outStride + r] = hsum256(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
        }
    }
}

void EXPORT(mm_q8_0)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,
    const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outOffset,
    int32_t outStride)
{
    const int nb = cols / QK8_0;
    w += wOffset;
    out += outOffset;
    const int rows2 = rows & ~1;
    const int tokens2 = tokens & ~1;
    for (int r = 0; r < rows2; r += 2)
    {
        const uint8_t *wr = w + r * rowBytes;
        for (int t = 0; t < tokens2; t += 2)
        {
            q8_tile(wr, wr + rowBytes, nb, qs + (int64_t)t * cols, qs + (int64_t)(t + 1) * cols, d + (int64_t)t * nb,
                d + (int64_t)(t + 1) * nb, out + (int64_t)t * outStride + r, outStride);
        }
    }
    for (int r = 0; r < rows; r++)
    {
        for (int t = r < rows2 ? tokens2 : 0; t < tokens; t++)
        {
            out[(int64_t)t * outStride + r] = dot_q8_0(w + r * rowBytes, nb, qs + (int64_t)t * cols,
                d + (int64_t)t * nb, aux + (int64_t)t * (cols / 4));
        }
    }
}

/* Q4_0 in ggml's layout batched (matrices of fewer than 16 rows, or the repack turned off): dot_q4_0 per pair. */
BATCHED_AS_DOTS(q4_0)
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Q4_0 repacked for VNNI ("Q4_0x16"): 16 rows interleaved, one row per 32-bit lane.
 *
 * A group of 16 consecutive rows keeps the same bytes (16 x nb x 18) in another order:
 *   qs     nb x 256 bytes  block b at b * 256: 4 vectors of 64 bytes; vector k, lane r (bytes 4r..4r+3) holds
 *                          bytes 4k..4k+3 of row r's nibbles in block b, so its low nibbles are weights 4k..4k+3
 *                          and its high nibbles weights 16+4k..16+4k+3 of that row (the nibbles themselves are not
 *                          moved: ggml's byte j already pairs weight j with weight j+16)
 *   scales nb x 32 bytes   at nb * 256: block b's 16 f16 scales, row r at b * 32 + 2r
 * The rows after the last whole group (rows % 16) keep ggml's layout.
 *
 * Per block a row's 32 products are 8 vpdpbusd whose activation operand is one broadcast dword (4 activations),
 * so the 16 lanes are 16 rows and no horizontal sum is ever needed: each row's result is one float chain over the
 * blocks, acc = fma(float(sum_b), scale_b * dx_b, acc), in block order. The single-token and the batched kernels
 * both compute exactly that chain, so a token's result has the same bits alone and in a batch. The integer sum of a
 * block (started from -8 x the block's activation sum, the unsigned-nibble correction) is exact whatever the order.
 * ------------------------------------------------------------------------------------------------------------- */
#define RP_ROWS 16
/* the most tokens of one tile: 8 on VNNI (32 registers), 4 on AVX2 (16) */
#if USE_VNNI
#define RP_TOKENS 8
#else
#define RP_TOKENS 4
#endif

/* One group of 16 rows from ggml's layout (src) into the layout above (dst); the two must not overlap. */
static void repack_group(const uint8_t *src, uint8_t *dst, int nb, size_t rowBytes)
{
    uint8_t *scales = dst + (size_t)nb * 256;
    for (int b = 0; b < nb; b++)
    {
        for (int r = 0; r < RP_ROWS; r++)
        {
            const uint8_t *blk = src + r * rowBytes + (size_t)b * Q4_0_BYTES;
            memcpy(scales + (size_t)b * 32 + 2 * r, blk, 2);
            for (int k = 0; k < 4; k++)
            {
                memcpy(dst + (size_t)b * 256 + 64 * k + 4 * r, blk + 2 + 4 * k, 4);
            }
        }
    }
}

/* Rewrites the whole groups of 16 rows of w (rows x cols Q4_0, ggml layout) in place into the layout above. */
void EXPORT(repack_q4_0)(uint8_t *w, int64_t rows, int32_t cols)
{
    const int nb = cols / QK8_0;
    const size_t rowBytes = (size_t)nb * Q4_0_BYTES;
    const size_t groupBytes = RP_ROWS * rowBytes;
    uint8_t *src = malloc(groupBytes);
    for (int64_t g = 0; g + RP_ROWS <= rows; g += RP_ROWS)
    {
        memcpy(src, w + g * rowBytes, groupBytes);
        repack_group(src, w + g * rowBytes, nb, rowBytes);
    }
    free(src);
}

/* As repack_q4_0 from src into dst (a copy: one pass over the bytes); the rows after the last group copied as they are. */
void EXPORT(repack_q4_0_copy)(const uint8_t *src, uint8_t *dst, int64_t rows, int32_t cols)
{
    const int nb = cols / QK8_0;
    const size_t rowBytes = (size_t)nb * Q4_0_BYTES;
    int64_t g = 0;
    for (; g + RP_ROWS <= rows; g += RP_ROWS)
    {
        repack_group(src + g * rowBytes, dst + g * rowBytes, nb, rowBytes);
    }
    memcpy(dst + g * rowBytes, src + g * rowBytes, (size_t)(rows - g) * rowBytes);
}

/* The inverse of repack_q4_0 (tests, and a tensor handed back to code that reads ggml's layout). */
void EXPORT(unpack_q4_0)(uint8_t *w, int64_t rows, int32_t cols)
{
    const int nb = cols / QK8_0;
    const size_t rowBytes = (size_t)nb * Q4_0_BYTES;
    const size_t groupBytes = RP_ROWS * rowBytes;
    uint8_t *src = malloc(groupBytes);
    for (int64_t g = 0; g + RP_ROWS <= rows; g += RP_ROWS)
    {
        uint8_t *dst = w + g * rowBytes;
        memcpy(src, dst, groupBytes);
        const uint8_t *scales = src + (size_t)nb * 256;
        for (int b = 0; b < nb; b++)
        {
            for (int r = 0; r < RP_ROWS; r++)
            {
                uint8_t *blk = dst + r * rowBytes + (size_t)b * Q4_0_BYTES;
                memcpy(blk, scales + (size_t)b * 32 + 2 * r, 2);
                for (int k = 0; k < 4; k++)
                {
                    memcpy(blk + 2 + 4 * k, src + (size_t)b * 256 + 64 * k + 4 * r, 4);
                }
            }
        }
    }
    free(src);
}

/* Per block of one token: -8 x the sum of its 32 activations (the sum of aux's 8 group entries). */
static inline void block_corrections(const int32_t *aux, int nb, int32_t *corr)
{
    for (int b = 0; b < nb; b++)
    {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(aux + 8 * b));
        const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        corr[b] = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
    }
}

#if USE_VNNI
/* The exact integer sums of one block for 16 rows: weights unpacked (lo[k], hi[k]), activations y (32 bytes). */
static inline __m512i rp_block_sum(const __m512i *lo, const __m512i *hi, const int8_t *y, int32_t corr)
{
    const int32_t *yd = (const int32_t *)y;
    __m512i s0 = _mm512_set1_epi32(corr);
    __m512i s1 = _mm512_setzero_si512();
    s0 = _mm512_dpbusd_epi32(s0, lo[0], _mm512_set1_epi32(yd[0]));
    s1 = _mm512_dpbusd_epi32(s1, hi[0], _mm512_set1_epi32(yd[4]));
    s0 = _mm512_dpbusd_epi32(s0, lo[1], _mm512_set1_epi32(yd[1]));
    s1 = _mm512_dpbusd_epi32(s1, hi[1], _mm512_set1_epi32(yd[5]));
    s0 = _mm512_dpbusd_epi32(s0, lo[2], _mm512_set1_epi32(yd[2]));
    s1 = _mm512_dpbusd_epi32(s1, hi[2], _mm512_set1_epi32(yd[6]));
    s0 = _mm512_dpbusd_epi32(s0, lo[3], _mm512_set1_epi32(yd[3]));
    s1 = _mm512_dpbusd_epi32(s1, hi[3], _mm512_set1_epi32(yd[7]));
    return _mm512_add_epi32(s0, s1);
}

static inline void rp_unpack(const uint8_t *qb, __m512i *lo, __m512i *hi)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; k++)
    {
        const __m512i p = _mm512_loadu_si512(qb + 64 * k);
        lo[k] = _mm512_and_si512(p, m4);
        hi[k] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
    }
}

#endif

/* Rows after the last whole group (ggml's layout): one dot_q4_0 per row and token, alone or batched alike. */
static void rp_tail(const uint8_t *w, int64_t rowBytes, int r0, int rows, int nb, int cols, const int8_t *qs,
    const float *d, const int32_t *aux, int tokens, float *out, int32_t outStride)
{
    for (int r = r0; r < rows; r++)
    {
        for (int t = 0; t < tokens; t++)
        {
            out[(int64_t)t * outStride + r] = dot_q4_0(w + r * rowBytes, nb, qs + (int64_t)t * cols, d + (int64_t)t * nb,
                aux + (int64_t)t * (cols / 4));
        }
    }
}

/*
 * N groups of 16 rows against TN tokens (both compile-time constants, so the N x TN accumulators stay in registers;
 * kept in memory they cost a store-to-load round trip per block). Per block each group's weights are unpacked once and
 * multiplied with each token; each (group, token) chain (block sum, scale, one FMA into its accumulator per block) is
 * the same whatever N and TN are, so a token gets the same bits alone and in a batch.
 *
 * Why N groups at once (N separate weight streams, N x TN independent chains), and why prefetches: a decode step reads
 * each weight once, and one group at a time did not keep enough of the memory stream in flight, nor overlap it with
 * the arithmetic of a small batch. With prefetch > 0 each block asks for its weights that many bytes ahead, as
 * non-temporal prefetches (into L1, not kept in L2/L3). Measured out of cache in a C harness (1.1B's 600 MB of groups):
 *   one token, one core (plain read 29-32 GB/s: 19-21 ms a pass): one group 30-32 ms, 2 groups 23-25, 3 or 4 groups
 *   20-22; two cores (read 58-65 GB/s: 9-10 ms): one group 16-18 ms, 2 groups 14, 4 groups 12.
 *   one tile of 2 / 4 / 8 tokens, one group, one core: 39-42 / 53-58 / 71-72 ms without the prefetch and with the
 *   accumulators on the stack, 30-32 / 34-35 / 46-49 with both (distances in RP_PREFETCH; T0/T1 prefetches gave
 *   nothing in an earlier measurement).
 * Prefill and decode batches of more than one tile take one group at a time; their first tile of a group prefetches
 * the weights RP_PREFETCH_MANY bytes ahead into all levels (T0: the later tiles read the group again from cache, which
 * a non-temporal prefetch would have left only in L1). Same harness, ms a pass without -> with (4 KB; 2 and 8 KB were
 * no better): 12 tokens 77-80 -> 62, 16: 106-107 -> 74-75, 32: 163-173 -> 132, 64: 270-273 -> 240-242.
 */
#if USE_VNNI
static inline __attribute__((always_inline)) void rp_tile(const int N, const int TN, const uint8_t *const *gw,
    int nb, int cols, const int8_t *qs, const float *d, const int32_t *corr, int t0, int prefetch, float *const *out,
    int32_t outStride)
{
    __m512 acc[4][8];
    for (int j = 0; j < N; j++)
    {
        for (int i = 0; i < TN; i++)
        {
            acc[j][i] = _mm512_setzero_ps();
        }
    }
    for (int b = 0; b < nb; b++)
    {
        for (int j = 0; j < N; j++)
        {
            if (prefetch > 0)
            {
                const char *ahead = (const char *)(gw[j] + (size_t)b * 256 + prefetch);
                _mm_prefetch(ahead, _MM_HINT_NTA);
                _mm_prefetch(ahead + 64, _MM_HINT_NTA);
                _mm_prefetch(ahead + 128, _MM_HINT_NTA);
                _mm_prefetch(ahead + 192, _MM_HINT_NTA);
            }
            else if (prefetch < 0)
            {
                const char *ahead = (const char *)(gw[j] + (size_t)b * 256 - prefetch);
                _mm_prefetch(ahead, _MM_HINT_T0);
                _mm_prefetch(ahead + 64, _MM_HINT_T0);
                _mm_prefetch(ahead + 128, _MM_HINT_T0);
                _mm_prefetch(ahead + 192, _MM_HINT_T0);
            }
            __m512i lo[4];
            __m512i hi[4];
            rp_unpack(gw[j] + (size_t)b * 256, lo, hi);
            const __m512 wsc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gw[j] + (size_t)nb * 256 + 32 * b)));
            for (int i = 0; i < TN; i++)
            {
                const int t = t0 + i;
                const __m512i s = rp_block_sum(lo, hi, qs + (int64_t)t * cols + 32 * b, corr[(size_t)t * nb + b]);
                const __m512 scale = _mm512_mul_ps(wsc, _mm512_set1_ps(d[(int64_t)t * nb + b]));
                acc[j][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[j][i]);
            }
        }
    }
    for (int j = 0; j < N; j++)
    {
        for (int i = 0; i < TN; i++)
        {
            _mm512_storeu_ps(out[j] + (int64_t)(t0 + i) * outStride, acc[j][i]);
        }
    }
}

#else /* AVX2 (also the AVX-512 BW build): each 64-byte vector of the layout as two halves of 8 rows */

/*
 * The exact integer sums of one block for the 8 rows of a half, as rp_block_sum: each vpdpbusd is a pmaddubsw (no
 * saturation: 2 x 15 x 127 per 16-bit pair), the eight products' pairs are summed in 16 bits (8 x 3,810 < 32,768),
 * and one pmaddwd makes the 32-bit lanes. The integers are the VNNI kernel's, so the float chain after them is too.
 */
static inline __m256i rp2_block_sum(const __m256i *lo, const __m256i *hi, const int8_t *y, int32_t corr)
{
    const int32_t *yd = (const int32_t *)y;
    __m256i a = _mm256_maddubs_epi16(lo[0], _mm256_set1_epi32(yd[0]));
    __m256i b = _mm256_maddubs_epi16(hi[0], _mm256_set1_epi32(yd[4]));
    a = _mm256_add_epi16(a, _mm256_maddubs_epi16(lo[1], _mm256_set1_epi32(yd[1])));
    b = _mm256_add_epi16(b, _mm256_maddubs_epi16(hi[1], _mm256_set1_epi32(yd[5])));
    a = _mm256_add_epi16(a, _mm256_maddubs_epi16(lo[2], _mm256_set1_epi32(yd[2])));
    b = _mm256_add_epi16(b, _mm256_maddubs_epi16(hi[2], _mm256_set1_epi32(yd[6])));
    a = _mm256_add_epi16(a, _mm256_maddubs_epi16(lo[3], _mm256_set1_epi32(yd[3])));
    b = _mm256_add_epi16(b, _mm256_maddubs_epi16(hi[3], _mm256_set1_epi32(yd[7])));
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(a, b), _mm256_set1_epi16(1)), _mm256_set1_epi32(corr));
}

/* Half h (rows 8h..8h+7) of a block's four 64-byte vectors: 32 bytes each. */
static inline void rp2_unpack(const uint8_t *qb, int h, __m256i *lo, __m256i *hi)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int k = 0; k < 4; k++)
    {
        const __m256i p = _mm256_loadu_si256((const __m256i *)(qb + 64 * k + 32 * h));
        lo[k] = _mm256_and_si256(p, m4);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(p, 4), m4);
    }
}

/*
 * As the VNNI rp_tile (the same chains, so the same bits), with a group's 16 rows as two halves of 8 in 256-bit
 * lanes. One or two tokens take both halves per block (one pass over the weights, 4 N TN accumulators); more take one
 * half per pass over the group (16 registers hold a half's unpacked weights and N TN accumulators; the second pass
 * reads the group from cache, so its prefetch is T0, not non-temporal).
 */
static inline __attribute__((always_inline)) void rp_tile(const int N, const int TN, const uint8_t *const *gw,
    int nb, int cols, const int8_t *qs, const float *d, const int32_t *corr, int t0, int prefetch, float *const *out,
    int32_t outStride)
{
    const int H = TN <= 2 ? 2 : 1;
    for (int h0 = 0; h0 < 2; h0 += H)
    {
        __m256 acc[4][2][RP_TOKENS];
        for (int j = 0; j < N; j++)
        {
            for (int h = 0; h < H; h++)
            {
                for (int i = 0; i < TN; i++)
                {
                    acc[j][h][i] = _mm256_setzero_ps();
                }
            }
        }
        for (int b = 0; b < nb; b++)
        {
            for (int j = 0; j < N; j++)
            {
                const uint8_t *qb = gw[j] + (size_t)b * 256;
                if (h0 == 0 && prefetch != 0)
                {
                    const char *ahead = (const char *)qb + (prefetch > 0 ? prefetch : -prefetch);
                    if (prefetch > 0 && H == 2)
                    {
                        _mm_prefetch(ahead, _MM_HINT_NTA);
                        _mm_prefetch(ahead + 64, _MM_HINT_NTA);
                        _mm_prefetch(ahead + 128, _MM_HINT_NTA);
                        _mm_prefetch(ahead + 192, _MM_HINT_NTA);
                    }
                    else
                    {
                        _mm_prefetch(ahead, _MM_HINT_T0);
                        _mm_prefetch(ahead + 64, _MM_HINT_T0);
                        _mm_prefetch(ahead + 128, _MM_HINT_T0);
                        _mm_prefetch(ahead + 192, _MM_HINT_T0);
                    }
                }
                for (int h = 0; h < H; h++)
                {
                    __m256i lo[4];
                    __m256i hi[4];
                    rp2_unpack(qb, h0 + h, lo, hi);
                    const __m256 wsc = _mm256_cvtph_ps(
                        _mm_loadu_si128((const __m128i *)(gw[j] + (size_t)nb * 256 + 32 * b + 16 * (h0 + h))));
                    for (int i = 0; i < TN; i++)
                    {
                        const int t = t0 + i;
                        const __m256i s = rp2_block_sum(lo, hi, qs + (int64_t)t * cols + 32 * b,
                            corr[(size_t)t * nb + b]);
                        const __m256 scale = _mm256_mul_ps(wsc, _mm256_set1_ps(d[(int64_t)t * nb + b]));
                        acc[j][h][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[j][h][i]);
                    }
                }
            }
        }
        for (int j = 0; j < N; j++)
        {
            for (int h = 0; h < H; h++)
            {
                for (int i = 0; i < TN; i++)
                {
                    _mm256_storeu_ps(out[j] + (int64_t)(t0 + i) * outStride + 8 * (h0 + h), acc[j][h][i]);
                }
            }
        }
    }
}
#endif

/* rp_tile for N groups and any token count: tiles of up to RP_TOKENS tokens. */
#if RP_TOKENS == 8
#define RP_CASES_4_TO_7(N)                                                                                            \
    case 4: rp_tile(N, 4, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride); break;            \
    case 5: rp_tile(N, 5, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride); break;            \
    case 6: rp_tile(N, 6, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride); break;            \
    case 7: rp_tile(N, 7, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride); break;
#else
#define RP_CASES_4_TO_7(N)
#endif
#define RP_GROUPS(N)                                                                                                  \
    static void rp_groups_##N(const uint8_t *const *gw, int nb, int cols, const int8_t *qs, const float *d,           \
        const int32_t *corr, int tokens, int prefetch, float *const *out, int32_t outStride)                          \
    {                                                                                                                 \
        for (int t0 = 0; t0 < tokens; t0 += RP_TOKENS)                                                               \
        {                                                                                                             \
            switch (tokens - t0 < RP_TOKENS ? tokens - t0 : RP_TOKENS)                                                \
            {                                                                                                         \
            case 1: rp_tile(N, 1, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride); break;    \
            case 2: rp_tile(N, 2, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride); break;    \
            case 3: rp_tile(N, 3, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride); break;    \
            RP_CASES_4_TO_7(N)                                                                                        \
            default: rp_tile(N, RP_TOKENS, gw, nb, cols, qs, d, corr, t0, t0 == 0 ? prefetch : 0, out, outStride);  \
                break;                                                                                                \
            }                                                                                                         \
        }                                                                                                             \
    }

RP_GROUPS(1)
RP_GROUPS(2)
RP_GROUPS(4)

/*
 * Groups multiplied at once (see rp_tile) for a lone tile of tn tokens, and its prefetch distance; the distance of the
 * first tile of a group when there are several. Each can be overridden with -D (product_bench's variants).
 *
 * Four tokens used to take 2 groups at once, and 5-8 tokens prefetched 4 KB ahead. product_bench (bench/, 1.1B's
 * projections from memory, one core, ms a step; three rounds alternated) measured one group with 16 KB better for
 * both: 4 tokens 33-34 against 42-44 (AVX2: 60-65 against 80-87), 6 tokens 34-40 against 38-44; 2 and 3 tokens
 * were better with 2 groups. The arithmetic alone (CACHE_ROWS=256, the weights in L2) is 170 / 230 / 300 G
 * weight-tokens/s at 1 / 4 / 8 tokens, against 340 for the two vpdpbusd pipes (8 vpdpbusd and a multiply and an FMA
 * per block and token), so batches of 4 and more are mostly arithmetic that the weight stream does not overlap.
 */
#ifndef RP_INTERLEAVE
#define RP_INTERLEAVE(tn) ((tn) == 1 ? 4 : (tn) <= 3 ? 2 : 1)
#endif
#ifndef RP_PREFETCH
#define RP_PREFETCH(tn) ((tn) == 1 ? 2048 : 16384)
#endif
#ifndef RP_PREFETCH_MANY
#define RP_PREFETCH_MANY 4096
#endif

/*
 * Tokens [0, tokens) against rows [0, rows) of a repacked tensor, w at a group start: a decode step's few tokens as
 * one tile against RP_INTERLEAVE groups at once (the groups g, g + part, g + 2 part, ... of the range, so that the
 * weight streams are far apart), prefill's many tokens in tiles against one group at a time. The export, mm_q4_0r, is
 * this for every token count.
 */
static void rp_product(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,
    const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outOffset,
    int32_t outStride)
{
    const int nb = cols / QK8_0;
    w += wOffset;
    out += outOffset;
    int32_t corrBuf[1024];
    const size_t corrCount = (size_t)nb * tokens;
    int32_t *corr = corrCount <= 1024 ? corrBuf : malloc(sizeof(int32_t) * corrCount);
    for (int t = 0; t < tokens; t++)
    {
        block_corrections(aux + (int64_t)t * (cols / 4), nb, corr + (size_t)t * nb);
    }
    const int lone = tokens <= RP_TOKENS;
    const int n = lone ? RP_INTERLEAVE(tokens) : 1;
    const int prefetch = lone ? RP_PREFETCH(tokens) : -RP_PREFETCH_MANY;
    const int groups = rows / RP_ROWS;
    const int part = groups / n;
    const uint8_t *gw[4];
    float *go[4];
    for (int g = 0; g < part; g++)
    {
        for (int j = 0; j < n; j++)
        {
            gw[j] = w + (int64_t)(g + j * part) * RP_ROWS * rowBytes;
            go[j] = out + RP_ROWS * (g + j * part);
        }
        switch (n)
        {
        case 4: rp_groups_4(gw, nb, cols, qs, d, corr, tokens, prefetch, go, outStride); break;
        case 2: rp_groups_2(gw, nb, cols, qs, d, corr, tokens, prefetch, go, outStride); break;
        default: rp_groups_1(gw, nb, cols, qs, d, corr, tokens, prefetch, go, outStride); break;
        }
    }
    for (int g = part * n; g < groups; g++)
    {
        gw[0] = w + (int64_t)g * RP_ROWS * rowBytes;
        go[0] = out + RP_ROWS * g;
        rp_groups_1(gw, nb, cols, qs, d, corr, tokens, prefetch, go, outStride);
    }
    if (corr != corrBuf)
    {
        free(corr);
    }
    rp_tail(w, rowBytes, groups * RP_ROWS, rows, nb, cols, qs, d, aux, tokens, out, outStride);
}

/* One token or many: see rp_product. */
void EXPORT(mm_q4_0r)(const uint8_t *w, int64_t wOffset, int64_t rowBytes, int32_t rows, int32_t cols,
    const int8_t *qs, const float *d, const int32_t *aux, int32_t tokens, float *out, int32_t outOffset,
    int32_t outStride)
{
    rp_product(w, wOffset, rowBytes, rows, cols, qs, d, aux, tokens, out, outOffset, outStride);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Attention of one decode row (or one row of a batch-invariant prefill) over a sequence's keys and values, read in
 * place from the KV pool's blocks (KvBlockPool's layout: block b at b * blockBytes; within it, for each layer the keys
 * then the values, position-major, kvDim elements of F16 or F32 each).
 *
 * For each key-value head of a range, the g query heads that share it, over positions [0, n):
 *   scores   s[h][p] = (q_h . k_p) * scale: per position the products of 16-lane chunks chained by FMA in chunk
 *            order, then the 16 lanes of the positions of a block of 16 summed by one fixed tree (at_reduce16)
 *   softmax  e[h][p] = exp(s[h][p] - max_h) (at_exp, about 1 ulp), summed lane-wise over 16-position chunks in
 *            order and then across lanes by _mm512_reduce_add_ps; w = e * (1 / sum)
 *   output   out[h] = sum_p w[h][p] v_p, one FMA per position in position order for each 16-lane chunk of the head
 * Those are the definition: every call with the same (q, keys, values, n) gives the same bits, so a row attends the
 * same alone, in a batch, in a decode step or in a batch-invariant prefill (the engine uses this kernel for all of
 * them when it is there), and on any node with this kernel set. It differs from the Java loops (Llama.attendGroup) in
 * the order of the additions of a score and in e^x, so the two are not mixed within one deployment.
 *
 * Keys (then values) are read once for all heads, a run of 16 positions at a time, F16 converted by F16C on the way;
 * the scores of a head and run are one vector. The next run is prefetched while one is read, a share per key-value
 * head, and the value pass keeps its accumulators in registers (a constant count of heads per pass): at 2,000
 * positions (1.1B's 22 layers, one thread) about 1.7x faster than reading a run at once and indexing the accumulators
 * at run time, with the same bits.
 * ------------------------------------------------------------------------------------------------------------- */
/* The blocks of positions [p0, p0 + cnt) (at most 16) and the positions' slots in them: one division per run. */
static inline void at_blocks(const uint8_t *pool, int64_t blockBytes, const int32_t *table, int bt, int p0, int cnt,
    const uint8_t **blk, int *slots)
{
    int b = p0 / bt;
    int slot = p0 - b * bt;
    for (int i = 0; i < cnt; i++, slot++)
    {
        if (slot == bt)
        {
            b++;
            slot = 0;
        }
        blk[i] = pool + table[b] * blockBytes;
        slots[i] = slot;
    }
}

/* The addresses of positions [p0, p0 + cnt) (at most 16) at offset off of their slots. */
static inline void at_slots(const uint8_t *pool, int64_t blockBytes, const int32_t *table, int bt, int64_t off,
    int64_t slotBytes, int p0, int cnt, const uint8_t **base)
{
    int slots[16];
    at_blocks(pool, blockBytes, table, bt, p0, cnt, base, slots);
    for (int i = 0; i < cnt; i++)
    {
        base[i] += off + (int64_t)slots[i] * slotBytes;
    }
}

/*
 * Prefetches share `part` of `parts` of the positions at next[0, cnt) toward L1: bytes [from, to) of each. A run is
 * prefetched in shares, one per key-value head it is read for, so that its misses are spread over the run before it
 * instead of filling the miss queue at once.
 */
static inline __attribute__((always_inline)) void at_prefetch_share(const uint8_t *const *next, int cnt, int part,
    int parts, int64_t from, int64_t to)
{
    for (int i = cnt * part / parts; i < cnt * (part + 1) / parts; i++)
    {
        for (int64_t o = from; o < to; o += 64)
        {
            _mm_prefetch((const char *)next[i] + o, _MM_HINT_T0);
        }
    }
}

#if defined(__AVX512F__)

/* e^x for x <= 0 (a softmax's shifted scores): Cody-Waite reduction by ln 2, a degree-6 polynomial, 2^n by exponent. */
static inline __m512 at_exp(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

/* Lane i of the result: the sum of the 16 lanes of a[i] (a fixed tree of pairwise additions). */
static inline __m512 at_reduce16(const __m512 *a)
{
    __m512 b[8];
    for (int i = 0; i < 8; i++)
    {
        /* lanes 0-7: a[2i]'s two halves added, lanes 8-15: a[2i+1]'s */
        const __m512 lo = _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512 hi = _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2));
        b[i] = _mm512_add_ps(lo, hi);
    }
    __m512 c[4];
    for (int i = 0; i < 4; i++)
    {
        /* 128-bit quarters: [b2i.q0+q1, b2i+1.q0+q1, b2i.q2+q3, b2i+1.q2+q3] */
        const __m512 lo = _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 hi = _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1));
        c[i] = _mm512_add_ps(lo, hi);
    }
    /* each quarter of c[i] holds 4 partial sums of one position; two more steps within 128-bit lanes */
    const __m512 d0 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
    const __m512 d1 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
    const __m512 e = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(d0), _mm512_castps_pd(d1))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(d0), _mm512_castps_pd(d1))));
    /* lane 4j + k of e holds the sum of a[4k + j] */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), e);
}

static inline __m512 at_load(const uint8_t *p, int elemBytes)
{
    return elemBytes == 2 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)) : _mm512_loadu_ps((const float *)p);
}

/* Accumulators of the weighted value sum held in registers at once (heads of a pass x hs / 16). */
#define AT_ACC 16

/* A value's 16-lane chunk as floats: F32, F16 (F16C) or int8 (the 8-bit pool, its scale applied by the weight). */
static inline __m512 at_load_v(const uint8_t *p, int elemBytes)
{
    if (elemBytes == 1)
    {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
    }
    return at_load(p, elemBytes);
}

/*
 * Softmax of each head's scores in scratch ([h * stride + p], max per head in mxs): e^(s - max), the lanes past n
 * zero, summed lane-wise over 16-position chunks in order and then across lanes; w = e * (1 / sum), then times the
 * value scale of the position (vsc[(h / g) * stride + p]) when vsc is not NULL.
 */
static inline __attribute__((always_inline)) void at_softmax(float *scratch, int stride, int heads, int n,
    const float *mxs, const float *vsc, int g)
{
    for (int h = 0; h < heads; h++)
    {
        float *sh = scratch + (int64_t)h * stride;
        const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_load_ps(mxs + 16 * h)));
        __m512 sum = _mm512_setzero_ps();
        for (int p0 = 0; p0 < n; p0 += 16)
        {
            const int cnt = n - p0 < 16 ? n - p0 : 16;
            const __mmask16 mk = (__mmask16)((1u << cnt) - 1);
            const __m512 e = _mm512_maskz_mov_ps(mk, at_exp(_mm512_sub_ps(_mm512_loadu_ps(sh + p0), mx)));
            _mm512_storeu_ps(sh + p0, e);
            sum = _mm512_add_ps(sum, e);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (int p0 = 0; p0 < n; p0 += 16)
        {
            __m512 w = _mm512_mul_ps(_mm512_loadu_ps(sh + p0), inv);
            if (vsc != NULL)
            {
                const int cnt = n - p0 < 16 ? n - p0 : 16;
                w = _mm512_mul_ps(w, _mm512_maskz_loadu_ps((__mmask16)((1u << cnt) - 1),
                    vsc + (int64_t)(h / g) * stride + p0));
            }
            _mm512_storeu_ps(sh + p0, w);
        }
    }
}

/*
 * hn heads' weighted sums over one run of cnt positions (hn a constant where it is called, so that the accumulators
 * stay in registers): the accumulators loaded from out, one FMA per position in position order, stored back.
 */
static inline __attribute__((always_inline)) void at_values_pass(const int hn, const int chunks, const __m512 *v,
    int cnt, const float *w, int stride, float *o)
{
    __m512 acc[AT_ACC];
    for (int j = 0; j < hn * chunks; j++)
    {
        acc[j] = _mm512_loadu_ps(o + 16 * j);
    }
    for (int i = 0; i < cnt; i++)
    {
        for (int h = 0; h < hn; h++)
        {
            const __m512 wh = _mm512_set1_ps(w[(int64_t)h * stride + i]);
            for (int c = 0; c < chunks; c++)
            {
                acc[h * chunks + c] = _mm512_fmadd_ps(wh, v[i * chunks + c], acc[h * chunks + c]);
            }
        }
    }
    for (int j = 0; j < hn * chunks; j++)
    {
        _mm512_storeu_ps(o + 16 * j, acc[j]);
    }
}

/*
 * The weighted sum of the values into out (the range's heads from o0): per run of positions (the next run
 * prefetched) and key-value head, the run's values converted to floats once (into L1), then per pass of heads whose
 * accumulators fit in registers, at_values_pass.
 */
static inline __attribute__((always_inline)) void at_values(const int elemBytes, const int hs, const uint8_t *pool,
    int64_t blockBytes, const int32_t *table, int bt, int64_t vOff, int64_t slotBytes, int g, int kv0, int kv1, int n,
    const float *scratch, int stride, float *o0)
{
    const int chunks = hs / 16;
    const int heads = (kv1 - kv0) * g;
    for (int i = 0; i < heads * hs; i += 16)
    {
        _mm512_storeu_ps(o0 + i, _mm512_setzero_ps());
    }
    const int perPass = AT_ACC / chunks > 0 ? AT_ACC / chunks : 1;
    __m512 v[16 * 16];
    for (int p0 = 0; p0 < n; p0 += 16)
    {
        const int cnt = n - p0 < 16 ? n - p0 : 16;
        const uint8_t *base[16];
        at_slots(pool, blockBytes, table, bt, vOff, slotBytes, p0, cnt, base);
        /* the next run's values, a share per key-value head (the range's bytes of each position) */
        const uint8_t *next[16];
        const int ncnt = n - p0 - 16 < 16 ? n - p0 - 16 : 16;
        if (ncnt > 0)
        {
            at_slots(pool, blockBytes, table, bt, vOff, slotBytes, p0 + 16, ncnt, next);
        }
        for (int kvh = kv0; kvh < kv1; kvh++)
        {
            if (ncnt > 0)
            {
                at_prefetch_share(next, ncnt, kvh - kv0, kv1 - kv0, (int64_t)kv0 * hs * elemBytes,
                    (int64_t)kv1 * hs * elemBytes);
            }
            for (int i = 0; i < cnt; i++)
            {
                const uint8_t *vp = base[i] + (int64_t)kvh * hs * elemBytes;
                for (int c = 0; c < chunks; c++)
                {
                    v[i * chunks + c] = at_load_v(vp + (int64_t)16 * c * elemBytes, elemBytes);
                }
            }
            for (int hg0 = 0; hg0 < g; hg0 += perPass)
            {
                const int hn = g - hg0 < perPass ? g - hg0 : perPass;
                const int h0 = (kvh - kv0) * g + hg0;
                const float *w = scratch + (int64_t)h0 * stride + p0;
                float *o = o0 + (int64_t)h0 * hs;
                switch (hn)
                {
                /* the common counts as constants (perPass is at least hn, so the guards always hold) */
                case 1: at_values_pass(1, chunks, v, cnt, w, stride, o); break;
                case 2: if (2 * chunks <= AT_ACC) at_values_pass(2, chunks, v, cnt, w, stride, o); break;
                case 3: if (3 * chunks <= AT_ACC) at_values_pass(3, chunks, v, cnt, w, stride, o); break;
                case 4: if (4 * chunks <= AT_ACC) at_values_pass(4, chunks, v, cnt, w, stride, o); break;
                default: at_values_pass(hn, chunks, v, cnt, w, stride, o); break;
                }
            }
        }
    }
}

/*
 * Key-value heads [kv0, kv1), each with its g query heads (query head kvh * g + h at q + (kvh * g + h) * hs), over
 * positions [0, n). The positions go in runs of up to 16 within one block: a run's keys (then values) are one
 * contiguous stretch of the block, read once for every head and then from L1.
 */
static inline __attribute__((always_inline)) void attend_kv_impl(const int elemBytes, const int hs,
    const uint8_t *pool, int64_t blockBytes, const int32_t *table, int bt, int kvDim, int layer, const float *q, int g,
    int kv0, int kv1, int n, float scale, float *scratch, float *out)
{
    const int chunks = hs / 16;
    const int stride = (n + 15) & ~15;
    const int heads = (kv1 - kv0) * g;
    const int64_t kOff = (int64_t)(layer * 2) * bt * kvDim * elemBytes;
    const int64_t vOff = (int64_t)(layer * 2 + 1) * bt * kvDim * elemBytes;
    const int64_t slotBytes = (int64_t)kvDim * elemBytes;
    const float *q0 = q + (int64_t)kv0 * g * hs;
    float *o0 = out + (int64_t)kv0 * g * hs;
    float mxs[256 * 16] __attribute__((aligned(64)));
    for (int h = 0; h < heads; h++)
    {
        _mm512_store_ps(mxs + 16 * h, _mm512_set1_ps(-INFINITY));
    }
    /* scores: runs of up to 16 positions (scratch holds them at [h * stride + p], in vectors of 16 from p = 0) */
    for (int p0 = 0; p0 < n; p0 += 16)
    {
        const int cnt = n - p0 < 16 ? n - p0 : 16;
        const __mmask16 m = (__mmask16)((1u << cnt) - 1);
        const uint8_t *base[16];
        at_slots(pool, blockBytes, table, bt, kOff, slotBytes, p0, cnt, base);
        const uint8_t *next[16];
        const int ncnt = n - p0 - 16 < 16 ? n - p0 - 16 : 16;
        if (ncnt > 0)
        {
            at_slots(pool, blockBytes, table, bt, kOff, slotBytes, p0 + 16, ncnt, next);
        }
        for (int kvh = kv0; kvh < kv1; kvh++)
        {
            if (ncnt > 0)
            {
                at_prefetch_share(next, ncnt, kvh - kv0, kv1 - kv0, (int64_t)kv0 * hs * elemBytes,
                    (int64_t)kv1 * hs * elemBytes);
            }
            __m512 k[16][16];
            for (int i = 0; i < cnt; i++)
            {
                for (int c = 0; c < chunks; c++)
                {
                    k[c][i] = at_load(base[i] + ((int64_t)kvh * hs + 16 * c) * elemBytes, elemBytes);
                }
            }
            for (int hg = 0; hg < g; hg++)
            {
                const int h = (kvh - kv0) * g + hg;
                const float *qh = q0 + (int64_t)h * hs;
                __m512 acc[16];
                for (int i = 0; i < 16; i++)
                {
                    acc[i] = _mm512_setzero_ps();
                }
                for (int i = 0; i < cnt; i++)
                {
                    __m512 a = _mm512_mul_ps(_mm512_loadu_ps(qh), k[0][i]);
                    for (int c = 1; c < chunks; c++)
                    {
                        a = _mm512_fmadd_ps(_mm512_loadu_ps(qh + 16 * c), k[c][i], a);
                    }
                    acc[i] = a;
                }
                const __m512 sv = _mm512_mul_ps(at_reduce16(acc), _mm512_set1_ps(scale));
                _mm512_storeu_ps(scratch + (int64_t)h * stride + p0, sv);
                const __m512 mx = _mm512_load_ps(mxs + 16 * h);
                _mm512_store_ps(mxs + 16 * h, _mm512_mask_max_ps(mx, m, mx, sv));
            }
        }
    }
    at_softmax(scratch, stride, heads, n, mxs, NULL, g);
    at_values(elemBytes, hs, pool, blockBytes, table, bt, vOff, slotBytes, g, kv0, kv1, n, scratch, stride, o0);
}

/*
 * Attention over an 8-bit KV pool (KvBlockPool's Q8 type). Within a block, for each layer the keys then the values,
 * each a region of int8 [blockTokens][kvDim] followed by f32 scales [blockTokens][kvDim / hs], one per position and
 * key-value head: an element is int8 * scale. The row's query heads are quantized the same way here (scale
 * max|q| / 127, round half to even), so a score is an exact integer dot product:
 *   scores   s[h][p] = (float)(sum_i qi[h][i] * ki[p][i]) * (dk[p] * (dq[h] * scale)); the integer sum is exact, so
 *            its order does not matter (VNNI's vpdpbusd and the BW set's vpmaddwd give the same bits)
 *   softmax  as attend_kv's; then w[h][p] = (e[h][p] * (1 / sum)) * dv[p]
 *   output   out[h] = sum_p w[h][p] * (float)vi[p], one FMA per position in position order per 16-lane chunk
 * Half the bytes of F16 and a quarter of the score arithmetic. The next run of 16 positions' keys and scale rows is
 * prefetched while one is scored, a share per key-value head (the values' next run likewise for every type,
 * at_values), so that the misses are spread over the run and the kernel does not wait on memory once per run and head.
 * The softmax and the value pass are attend_kv's (at_softmax, at_values). With VNNI the keys of a run are transposed
 * so that a head's 16 scores come out of 16 vpdpbusd in one vector (aq_scores), with no sum across lanes.
 * ------------------------------------------------------------------------------------------------------------- */

#if defined(__AVX512VNNI__)
/*
 * VNNI: a run's keys of one key-value head are transposed, so that lane i of column j holds bytes 4j..4j+3 of
 * position i's key, as unsigned bytes (k + 128); one vpdpbusd per column with the query's dword j broadcast then
 * scores all 16 positions at once, with no sum across lanes. The offset is taken back by starting from
 * -128 * sum(q). 64-byte chunks of a head.
 */
#define AQ_CHUNK 64
typedef int8_t aq_q_t;

/* 16 rows of 16 dwords to 16 columns, in place: r[j] lane i = r[i] lane j before. */
static inline __attribute__((always_inline)) void aq_transpose16(__m512i *r)
{
    __m512i t[16];
    for (int i = 0; i < 8; i++)
    {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + k], 128-bit block b: column 4b + k of rows 4i..4i+3 */
    __m512i u[16];
    for (int i = 0; i < 4; i++)
    {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int k = 0; k < 4; k++)
    {
        const __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i w0 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(3, 1, 3, 1));
        r[k] = _mm512_shuffle_i32x4(v0, w0, _MM_SHUFFLE(2, 0, 2, 0));
        r[8 + k] = _mm512_shuffle_i32x4(v0, w0, _MM_SHUFFLE(3, 1, 3, 1));
        r[4 + k] = _mm512_shuffle_i32x4(v1, w1, _MM_SHUFFLE(2, 0, 2, 0));
        r[12 + k] = _mm512_shuffle_i32x4(v1, w1, _MM_SHUFFLE(3, 1, 3, 1));
    }
}
#else
/* BW: 32 int16 per chunk (vpmaddwd: exact, no saturation), summed across lanes per position (aq_reduce16) */
#define AQ_CHUNK 32
typedef int16_t aq_q_t;

/* Lane i of the result: the sum of the 16 lanes of a[i] (integers, so exact whatever the tree). */
static inline __m512i aq_reduce16(const __m512i *a)
{
    __m512i b[8];
    for (int i = 0; i < 8; i++)
    {
        b[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
            _mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    }
    __m512i c[4];
    for (int i = 0; i < 4; i++)
    {
        c[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
            _mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    }
    const __m512i d0 = _mm512_add_epi32(_mm512_unpacklo_epi32(c[0], c[1]), _mm512_unpackhi_epi32(c[0], c[1]));
    const __m512i d1 = _mm512_add_epi32(_mm512_unpacklo_epi32(c[2], c[3]), _mm512_unpackhi_epi32(c[2], c[3]));
    const __m512i e = _mm512_add_epi32(_mm512_unpacklo_epi64(d0, d1), _mm512_unpackhi_epi64(d0, d1));
    return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), e);
}
#endif

/* Chunk c of a position's key (hs bytes at p): 64 int8 (VNNI) or 32 widened to int16 (BW), zero past hs. */
static inline __attribute__((always_inline)) __m512i aq_load_k(const uint8_t *p, int c, int hs)
{
    const int left = hs - c * AQ_CHUNK;
#if defined(__AVX512VNNI__)
    const __mmask64 mk = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
    return _mm512_maskz_loadu_epi8(mk, p + c * 64);
#else
    const __mmask32 mk = left >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << left) - 1);
    return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mk, p + c * 32));
#endif
}

/*
 * The run's keys of key-value head kvh (positions at blk[i] + off, cnt of them) against the g query heads from h0:
 * the integer scores, lane i for position i (zero past cnt).
 */
static inline __attribute__((always_inline)) void aq_scores(const int hs, const uint8_t *const *kp, int cnt,
    const aq_q_t *qq, const int32_t *qstart, int h0, int g, __m512i *isum)
{
    const int qc = (hs + AQ_CHUNK - 1) / AQ_CHUNK;
#if defined(__AVX512VNNI__)
    __m512i kt[256 / 4]; /* column j: bytes 4j..4j+3 of every position's key, plus 128 */
    for (int c = 0; c < qc; c++)
    {
        __m512i r[16];
        for (int i = 0; i < 16; i++)
        {
            r[i] = i < cnt ? aq_load_k(kp[i], c, hs) : _mm512_setzero_si512();
        }
        aq_transpose16(r);
        const int cols = hs - c * 64 >= 64 ? 16 : (hs - c * 64) / 4;
        for (int j = 0; j < cols; j++)
        {
            kt[16 * c + j] = _mm512_xor_si512(r[j], _mm512_set1_epi8((char)0x80));
        }
    }
    for (int hg = 0; hg < g; hg++)
    {
        const int32_t *qw = (const int32_t *)(qq + (int64_t)(h0 + hg) * qc * AQ_CHUNK);
        __m512i a = _mm512_set1_epi32(qstart[h0 + hg]);
        for (int j = 0; j < hs / 4; j++)
        {
            a = _mm512_dpbusd_epi32(a, kt[j], _mm512_set1_epi32(qw[j]));
        }
        isum[hg] = a;
    }
#else
    (void)qstart;
    __m512i k[16][256 / AQ_CHUNK];
    for (int i = 0; i < 16; i++)
    {
        for (int c = 0; c < qc; c++)
        {
            k[i][c] = i < cnt ? aq_load_k(kp[i], c, hs) : _mm512_setzero_si512();
        }
    }
    for (int hg = 0; hg < g; hg++)
    {
        const aq_q_t *qh = qq + (int64_t)(h0 + hg) * qc * AQ_CHUNK;
        __m512i acc[16];
        for (int i = 0; i < 16; i++)
        {
            __m512i a = _mm512_setzero_si512();
            for (int c = 0; c < qc; c++)
            {
                a = _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_load_si512(qh + c * AQ_CHUNK), k[i][c]));
            }
            acc[i] = a;
        }
        isum[hg] = aq_reduce16(acc);
    }
#endif
}

static inline __attribute__((always_inline)) void attend_kv_q8_impl(const int hs, const uint8_t *pool,
    int64_t blockBytes, const int32_t *table, int bt, int kvDim, int layer, const float *q, int g, int kv0, int kv1,
    int n, float scale, float *scratch, float *out)
{
    const int kvHeads = kvDim / hs;
    const int qc = (hs + AQ_CHUNK - 1) / AQ_CHUNK;
    const int stride = (n + 15) & ~15;
    const int heads = (kv1 - kv0) * g;
    const int64_t region = (int64_t)bt * kvDim + (int64_t)bt * kvHeads * 4;
    const int64_t kOff = (int64_t)(layer * 2) * region;
    const int64_t vOff = kOff + region;
    const int64_t scaleOff = (int64_t)bt * kvDim;
    const float *q0 = q + (int64_t)kv0 * g * hs;
    float *o0 = out + (int64_t)kv0 * g * hs;
    float *vsc = scratch + (int64_t)heads * stride; /* value scales: [key-value head of the range][stride] */
    aq_q_t qq[256 * 256] __attribute__((aligned(64))); /* the query heads quantized, each padded to whole chunks */
    int32_t qstart[256]; /* VNNI: -128 * sum(qi[h]) */
    float qd[256];
    float mxs[256 * 16] __attribute__((aligned(64)));
    for (int h = 0; h < heads; h++)
    {
        _mm512_store_ps(mxs + 16 * h, _mm512_set1_ps(-INFINITY));
        const float *qh = q0 + (int64_t)h * hs;
        __m512 amax = _mm512_setzero_ps();
        for (int i = 0; i < hs; i += 16)
        {
            amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(qh + i)));
        }
        const float d = _mm512_reduce_max_ps(amax) / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f);
        aq_q_t *qo = qq + (int64_t)h * qc * AQ_CHUNK;
        __m512i sum = _mm512_setzero_si512();
        for (int i = 0; i < qc * AQ_CHUNK; i += 16)
        {
            /* round half to even (the default rounding mode), as lrintf */
            const __m512i v = i < hs ? _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(qh + i), id)) :
                _mm512_setzero_si512();
            sum = _mm512_add_epi32(sum, v);
#if defined(__AVX512VNNI__)
            _mm_store_si128((__m128i *)(qo + i), _mm512_cvtepi32_epi8(v));
#else
            _mm256_store_si256((__m256i *)(qo + i), _mm512_cvtepi32_epi16(v));
#endif
        }
        qstart[h] = -128 * _mm512_reduce_add_epi32(sum);
        qd[h] = d * scale;
    }
    /* scores: runs of up to 16 positions; a run's keys of one key-value head loaded once for its g query heads */
    for (int p0 = 0; p0 < n; p0 += 16)
    {
        const int cnt = n - p0 < 16 ? n - p0 : 16;
        const __mmask16 m = (__mmask16)((1u << cnt) - 1);
        const uint8_t *blk[16]; /* the blocks of the run's positions, and their slots */
        int slots[16];
        at_blocks(pool, blockBytes, table, bt, p0, cnt, blk, slots);
        /* the next run's keys and scale rows, a share per key-value head (the scale rows are read whole) */
        const uint8_t *next[16];
        const uint8_t *nextScales[32];
        const int ncnt = n - p0 - 16 < 16 ? n - p0 - 16 : 16;
        if (ncnt > 0)
        {
            at_slots(pool, blockBytes, table, bt, kOff, kvDim, p0 + 16, ncnt, next);
            at_slots(pool, blockBytes, table, bt, kOff + scaleOff, kvHeads * 4, p0 + 16, ncnt, nextScales);
            at_slots(pool, blockBytes, table, bt, vOff + scaleOff, kvHeads * 4, p0 + 16, ncnt, nextScales + ncnt);
        }
        for (int kvh = kv0; kvh < kv1; kvh++)
        {
            if (ncnt > 0)
            {
                at_prefetch_share(next, ncnt, kvh - kv0, kv1 - kv0, (int64_t)kv0 * hs, (int64_t)kv1 * hs);
                at_prefetch_share(nextScales, 2 * ncnt, kvh - kv0, kv1 - kv0, 0, 1);
            }
            float ksc[16] __attribute__((aligned(64)));
            const uint8_t *kp[16];
            for (int i = cnt; i < 16; i++) /* past the run: zero scores */
            {
                ksc[i] = 0;
            }
            for (int i = 0; i < cnt; i++)
            {
                const int64_t sc = scaleOff + ((int64_t)slots[i] * kvHeads + kvh) * 4;
                memcpy(&ksc[i], blk[i] + kOff + sc, 4);
                memcpy(&vsc[(int64_t)(kvh - kv0) * stride + p0 + i], blk[i] + vOff + sc, 4);
                kp[i] = blk[i] + kOff + (int64_t)slots[i] * kvDim + (int64_t)kvh * hs;
            }
            __m512i isum[256];
            const int h0 = (kvh - kv0) * g;
            aq_scores(hs, kp, cnt, qq, qstart, h0, g, isum);
            const __m512 kscv = _mm512_load_ps(ksc);
            for (int hg = 0; hg < g; hg++)
            {
                const int h = h0 + hg;
                const __m512 sv = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[hg]),
                    _mm512_mul_ps(kscv, _mm512_set1_ps(qd[h])));
                _mm512_storeu_ps(scratch + (int64_t)h * stride + p0, sv);
                const __m512 mx = _mm512_load_ps(mxs + 16 * h);
                _mm512_store_ps(mxs + 16 * h, _mm512_mask_max_ps(mx, m, mx, sv));
            }
        }
    }
    /* the weights carry the value scales */
    at_softmax(scratch, stride, heads, n, mxs, vsc, g);
    at_values(1, hs, pool, blockBytes, table, bt, vOff, kvDim, g, kv0, kv1, n, scratch, stride, o0);
}

/*
 * The kernels above for heads of hs = 16, 32, ..., 256 elements, key-value heads [kv0, kv1) with g query heads each
 * (at most 256 query heads in the range); q and out hold the row's heads at q + qOffset, out + outOffset (floats),
 * scratch at least ((kv1 - kv0) * g + (kv1 - kv0)) * (n rounded up to 16) floats. elemBytes 4 (F32), 2 (F16) or
 * 1 (the 8-bit pool, attend_kv_q8_impl).
 */
void EXPORT(attend_kv)(const uint8_t *pool, int64_t blockBytes, const int32_t *table, int32_t blockTokens,
    int32_t kvDim, int32_t elemBytes, int32_t layer, const float *q, int32_t qOffset, int32_t g, int32_t kv0,
    int32_t kv1, int32_t hs, int32_t n, float scale, float *scratch, float *out, int32_t outOffset)
{
#define AT_CALL(E, HS) attend_kv_impl(E, HS, pool, blockBytes, table, blockTokens, kvDim, layer, q + qOffset, g, kv0, \
        kv1, n, scale, scratch, out + outOffset)
    /* the common head sizes as constants (loops unrolled, the chunks in registers) */
    if (elemBytes == 1)
    {
        /* the 8-bit pool (scale regions after the int8 ones), its own kernel */
#define AQ_CALL(HS) attend_kv_q8_impl(HS, pool, blockBytes, table, blockTokens, kvDim, layer, q + qOffset, g, kv0, kv1, \
            n, scale, scratch, out + outOffset)
        if (hs == 64) AQ_CALL(64); else if (hs == 128) AQ_CALL(128); else AQ_CALL(hs);
#undef AQ_CALL
    }
    else if (elemBytes == 2)
    {
        if (hs == 64) AT_CALL(2, 64); else if (hs == 128) AT_CALL(2, 128); else AT_CALL(2, hs);
    }
    else
    {
        if (hs == 64) AT_CALL(4, 64); else if (hs == 128) AT_CALL(4, 128); else AT_CALL(4, hs);
    }
#undef AT_CALL
}
#else
/* ---------------------------------------------------------------------------------------------------------------
 * AVX2: attend_kv in 8-lane vectors (runs of 8 positions), with the definitions above read for 8 lanes: a score's
 * 8-lane chunk products chained by FMA in chunk order, the lanes of 8 positions summed by one fixed tree
 * (at2_reduce8); e^x the same operations per lane as at_exp; the softmax sums lane-wise over 8-position chunks in
 * order, then across lanes by a fixed tree; the value sums one FMA per position in position order. The 8-bit pool's
 * scores are the same exact integers and the same float products as the AVX-512 sets'; the rest is this set's own
 * order of additions, so the bits are those of this set.
 * ------------------------------------------------------------------------------------------------------------- */

static inline __m256 at2_exp(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Lane i of the result: the sum of the 8 lanes of a[i] (a fixed tree of pairwise additions). */
static inline __m256 at2_reduce8(const __m256 *a)
{
    const __m256 c0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 c1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    /* c0's 128-bit halves: the sums of lanes 0-3 and 4-7 of a[0..3]; c1 the same for a[4..7] */
    return _mm256_add_ps(_mm256_permute2f128_ps(c0, c1, 0x20), _mm256_permute2f128_ps(c0, c1, 0x31));
}

/* The same for integers (exact, so any tree would do). */
static inline __m256i at2_reduce8i(const __m256i *a)
{
    const __m256i c0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    const __m256i c1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(c0, c1, 0x20), _mm256_permute2x128_si256(c0, c1, 0x31));
}

static inline float at2_hsum(__m256 v)
{
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

static inline float at2_hmax(__m256 v)
{
    const __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_max_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_max_ss(b, _mm_movehdup_ps(b)));
}

/* Lanes [0, cnt) all ones. */
static inline __m256 at2_mask(int cnt)
{
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

/* An 8-lane chunk of a key or value as floats: F32, F16 (F16C) or int8 (the 8-bit pool, its scale applied later). */
static inline __m256 at2_load(const uint8_t *p, int elemBytes)
{
    if (elemBytes == 1)
    {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
    }
    return elemBytes == 2 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)) : _mm256_loadu_ps((const float *)p);
}

/* Softmax of each head's scores (at2's definition; vsc as at_softmax's). */
static inline __attribute__((always_inline)) void at2_softmax(float *scratch, int stride, int heads, int n,
    const float *mxs, const float *vsc, int g)
{
    for (int h = 0; h < heads; h++)
    {
        float *sh = scratch + (int64_t)h * stride;
        const __m256 mx = _mm256_set1_ps(at2_hmax(_mm256_loadu_ps(mxs + 8 * h)));
        __m256 sum = _mm256_setzero_ps();
        for (int p0 = 0; p0 < n; p0 += 8)
        {
            const __m256 e = _mm256_and_ps(at2_mask(n - p0), at2_exp(_mm256_sub_ps(_mm256_loadu_ps(sh + p0), mx)));
            _mm256_storeu_ps(sh + p0, e);
            sum = _mm256_add_ps(sum, e);
        }
        const __m256 inv = _mm256_set1_ps(1.0f / at2_hsum(sum));
        for (int p0 = 0; p0 < n; p0 += 8)
        {
            __m256 w = _mm256_mul_ps(_mm256_loadu_ps(sh + p0), inv);
            if (vsc != NULL)
            {
                w = _mm256_mul_ps(w, _mm256_loadu_ps(vsc + (int64_t)(h / g) * stride + p0));
            }
            _mm256_storeu_ps(sh + p0, w);
        }
    }
}

/* Accumulators of the weighted value sum in registers at once (AVX2 has 16). */
#define AT2_ACC 8

static inline __attribute__((always_inline)) void at2_values_pass(const int hn, const int chunks, const __m256 *v,
    int cnt, const float *w, int stride, float *o)
{
    __m256 acc[4 * AT2_ACC]; /* one head of 256 elements at most */
    for (int j = 0; j < hn * chunks; j++)
    {
        acc[j] = _mm256_loadu_ps(o + 8 * j);
    }
    for (int i = 0; i < cnt; i++)
    {
        for (int h = 0; h < hn; h++)
        {
            const __m256 wh = _mm256_set1_ps(w[(int64_t)h * stride + i]);
            for (int c = 0; c < chunks; c++)
            {
                acc[h * chunks + c] = _mm256_fmadd_ps(wh, v[i * chunks + c], acc[h * chunks + c]);
            }
        }
    }
    for (int j = 0; j < hn * chunks; j++)
    {
        _mm256_storeu_ps(o + 8 * j, acc[j]);
    }
}

/* The weighted sum of the values (at_values' shape in runs of 8: a run converted once, then passes of heads). */
static inline __attribute__((always_inline)) void at2_values(const int elemBytes, const int hs, const uint8_t *pool,
    int64_t blockBytes, const int32_t *table, int bt, int64_t vOff, int64_t slotBytes, int g, int kv0, int kv1, int n,
    const float *scratch, int stride, float *o0)
{
    const int chunks = hs / 8;
    const int heads = (kv1 - kv0) * g;
    for (int i = 0; i < heads * hs; i += 8)
    {
        _mm256_storeu_ps(o0 + i, _mm256_setzero_ps());
    }
    const int perPass = AT2_ACC / chunks > 0 ? AT2_ACC / chunks : 1;
    __m256 v[8 * 32];
    for (int p0 = 0; p0 < n; p0 += 8)
    {
        const int cnt = n - p0 < 8 ? n - p0 : 8;
        const uint8_t *base[16];
        at_slots(pool, blockBytes, table, bt, vOff, slotBytes, p0, cnt, base);
        const uint8_t *next[16];
        const int ncnt = n - p0 - 8 < 8 ? n - p0 - 8 : 8;
        if (ncnt > 0)
        {
            at_slots(pool, blockBytes, table, bt, vOff, slotBytes, p0 + 8, ncnt, next);
        }
        for (int kvh = kv0; kvh < kv1; kvh++)
        {
            if (ncnt > 0)
            {
                at_prefetch_share(next, ncnt, kvh - kv0, kv1 - kv0, (int64_t)kv0 * hs * elemBytes,
                    (int64_t)kv1 * hs * elemBytes);
            }
            for (int i = 0; i < cnt; i++)
            {
                const uint8_t *vp = base[i] + (int64_t)kvh * hs * elemBytes;
                for (int c = 0; c < chunks; c++)
                {
                    v[i * chunks + c] = at2_load(vp + (int64_t)8 * c * elemBytes, elemBytes);
                }
            }
            for (int hg0 = 0; hg0 < g; hg0 += perPass)
            {
                const int hn = g - hg0 < perPass ? g - hg0 : perPass;
                const int h0 = (kvh - kv0) * g + hg0;
                const float *w = scratch + (int64_t)h0 * stride + p0;
                float *o = o0 + (int64_t)h0 * hs;
                /* the common counts as constants (perPass is at least hn, so the guards always hold) */
                switch (hn)
                {
                case 1: at2_values_pass(1, chunks, v, cnt, w, stride, o); break;
                case 2: if (2 * chunks <= AT2_ACC) at2_values_pass(2, chunks, v, cnt, w, stride, o); break;
                case 4: if (4 * chunks <= AT2_ACC) at2_values_pass(4, chunks, v, cnt, w, stride, o); break;
                default: at2_values_pass(hn, chunks, v, cnt, w, stride, o); break;
                }
            }
        }
    }
}

/*
 * F16 or F32 keys and values, heads of hs (a multiple of 16, at most 256): attend_kv_impl's definition in runs of 8
 * positions.
 */
static inline __attribute__((always_inline)) void attend_kv2_impl(const int elemBytes, const int hs,
    const uint8_t *pool, int64_t blockBytes, const int32_t *table, int bt, int kvDim, int layer, const float *q, int g,
    int kv0, int kv1, int n, float scale, float *scratch, float *out)
{
    const int chunks = hs / 8;
    const int stride = (n + 15) & ~15;
    const int heads = (kv1 - kv0) * g;
    const int64_t kOff = (int64_t)(layer * 2) * bt * kvDim * elemBytes;
    const int64_t vOff = (int64_t)(layer * 2 + 1) * bt * kvDim * elemBytes;
    const int64_t slotBytes = (int64_t)kvDim * elemBytes;
    const float *q0 = q + (int64_t)kv0 * g * hs;
    float *o0 = out + (int64_t)kv0 * g * hs;
    float mxs[256 * 8];
    for (int h = 0; h < heads; h++)
    {
        _mm256_storeu_ps(mxs + 8 * h, _mm256_set1_ps(-INFINITY));
    }
    __m256 k[8 * 32]; /* a run's keys of one key-value head as floats: [position][chunk] */
    for (int p0 = 0; p0 < n; p0 += 8)
    {
        const int cnt = n - p0 < 8 ? n - p0 : 8;
        const __m256 m = at2_mask(cnt);
        const uint8_t *base[16];
        at_slots(pool, blockBytes, table, bt, kOff, slotBytes, p0, cnt, base);
        const uint8_t *next[16];
        const int ncnt = n - p0 - 8 < 8 ? n - p0 - 8 : 8;
        if (ncnt > 0)
        {
            at_slots(pool, blockBytes, table, bt, kOff, slotBytes, p0 + 8, ncnt, next);
        }
        for (int kvh = kv0; kvh < kv1; kvh++)
        {
            if (ncnt > 0)
            {
                at_prefetch_share(next, ncnt, kvh - kv0, kv1 - kv0, (int64_t)kv0 * hs * elemBytes,
                    (int64_t)kv1 * hs * elemBytes);
            }
            for (int i = 0; i < cnt; i++)
            {
                for (int c = 0; c < chunks; c++)
                {
                    k[i * chunks + c] = at2_load(base[i] + ((int64_t)kvh * hs + 8 * c) * elemBytes, elemBytes);
                }
            }
            for (int hg = 0; hg < g; hg++)
            {
                const int h = (kvh - kv0) * g + hg;
                const float *qh = q0 + (int64_t)h * hs;
                __m256 acc[8];
                for (int i = 0; i < 8; i++)
                {
                    acc[i] = _mm256_setzero_ps();
                }
                for (int i = 0; i < cnt; i++)
                {
                    __m256 a = _mm256_mul_ps(_mm256_loadu_ps(qh), k[i * chunks]);
                    for (int c = 1; c < chunks; c++)
                    {
                        a = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 8 * c), k[i * chunks + c], a);
                    }
                    acc[i] = a;
                }
                const __m256 sv = _mm256_mul_ps(at2_reduce8(acc), _mm256_set1_ps(scale));
                _mm256_storeu_ps(scratch + (int64_t)h * stride + p0, sv);
                const __m256 mx = _mm256_loadu_ps(mxs + 8 * h);
                _mm256_storeu_ps(mxs + 8 * h, _mm256_blendv_ps(mx, _mm256_max_ps(mx, sv), m));
            }
        }
    }
    at2_softmax(scratch, stride, heads, n, mxs, NULL, g);
    at2_values(elemBytes, hs, pool, blockBytes, table, bt, vOff, slotBytes, g, kv0, kv1, n, scratch, stride, o0);
}

/*
 * The 8-bit pool (attend_kv_q8_impl's definition): the query quantized as there, each score the exact integer dot
 * product (the key widened to int16, vpmaddwd) times the same float factors.
 */
static inline __attribute__((always_inline)) void attend_kv2_q8_impl(const int hs, const uint8_t *pool,
    int64_t blockBytes, const int32_t *table, int bt, int kvDim, int layer, const float *q, int g, int kv0, int kv1,
    int n, float scale, float *scratch, float *out)
{
    const int kvHeads = kvDim / hs;
    const int chunks = hs / 16;
    const int stride = (n + 15) & ~15;
    const int heads = (kv1 - kv0) * g;
    const int64_t region = (int64_t)bt * kvDim + (int64_t)bt * kvHeads * 4;
    const int64_t kOff = (int64_t)(layer * 2) * region;
    const int64_t vOff = kOff + region;
    const int64_t scaleOff = (int64_t)bt * kvDim;
    const float *q0 = q + (int64_t)kv0 * g * hs;
    float *o0 = out + (int64_t)kv0 * g * hs;
    float *vsc = scratch + (int64_t)heads * stride;
    int16_t qq[256 * 256] __attribute__((aligned(32)));
    float qd[256];
    float mxs[256 * 8];
    for (int h = 0; h < heads; h++)
    {
        _mm256_storeu_ps(mxs + 8 * h, _mm256_set1_ps(-INFINITY));
        const float *qh = q0 + (int64_t)h * hs;
        __m256 amax = _mm256_setzero_ps();
        for (int i = 0; i < hs; i += 8)
        {
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(qh + i)));
        }
        const float d = at2_hmax(amax) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
        for (int i = 0; i < hs; i += 8)
        {
            /* round half to even (the default rounding mode), as lrintf */
            int32_t v[8];
            _mm256_storeu_si256((__m256i *)v, _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(qh + i), id)));
            for (int j = 0; j < 8; j++)
            {
                qq[(int64_t)h * hs + i + j] = (int16_t)v[j];
            }
        }
        qd[h] = d * scale;
    }
    __m256i k[8 * 16]; /* a run's keys of one key-value head widened to int16: [position][16-element chunk] */
    for (int p0 = 0; p0 < n; p0 += 8)
    {
        const int cnt = n - p0 < 8 ? n - p0 : 8;
        const __m256 m = at2_mask(cnt);
        const uint8_t *blk[16]; /* the blocks of the run's positions, and their slots */
        int slots[16];
        at_blocks(pool, blockBytes, table, bt, p0, cnt, blk, slots);
        const uint8_t *next[16];
        const uint8_t *nextScales[32];
        const int ncnt = n - p0 - 8 < 8 ? n - p0 - 8 : 8;
        if (ncnt > 0)
        {
            at_slots(pool, blockBytes, table, bt, kOff, kvDim, p0 + 8, ncnt, next);
            at_slots(pool, blockBytes, table, bt, kOff + scaleOff, kvHeads * 4, p0 + 8, ncnt, nextScales);
            at_slots(pool, blockBytes, table, bt, vOff + scaleOff, kvHeads * 4, p0 + 8, ncnt, nextScales + ncnt);
        }
        for (int kvh = kv0; kvh < kv1; kvh++)
        {
            if (ncnt > 0)
            {
                at_prefetch_share(next, ncnt, kvh - kv0, kv1 - kv0, (int64_t)kv0 * hs, (int64_t)kv1 * hs);
                at_prefetch_share(nextScales, 2 * ncnt, kvh - kv0, kv1 - kv0, 0, 1);
            }
            float ksc[8];
            for (int i = 0; i < 8; i++)
            {
                ksc[i] = 0;
            }
            for (int i = 0; i < cnt; i++)
            {
                const int64_t sc = scaleOff + ((int64_t)slots[i] * kvHeads + kvh) * 4;
                memcpy(&ksc[i], blk[i] + kOff + sc, 4);
                memcpy(&vsc[(int64_t)(kvh - kv0) * stride + p0 + i], blk[i] + vOff + sc, 4);
                const uint8_t *kp = blk[i] + kOff + (int64_t)slots[i] * kvDim + (int64_t)kvh * hs;
                for (int c = 0; c < chunks; c++)
                {
                    k[i * chunks + c] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(kp + 16 * c)));
                }
            }
            const __m256 kscv = _mm256_loadu_ps(ksc);
            for (int hg = 0; hg < g; hg++)
            {
                const int h = (kvh - kv0) * g + hg;
                const int16_t *qh = qq + (int64_t)h * hs;
                __m256i acc[8];
                for (int i = 0; i < 8; i++)
                {
                    acc[i] = _mm256_setzero_si256();
                }
                for (int i = 0; i < cnt; i++)
                {
                    __m256i a = _mm256_madd_epi16(_mm256_load_si256((const __m256i *)qh), k[i * chunks]);
                    for (int c = 1; c < chunks; c++)
                    {
                        a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(qh + 16 * c)),
                            k[i * chunks + c]));
                    }
                    acc[i] = a;
                }
                const __m256 sv = _mm256_mul_ps(_mm256_cvtepi32_ps(at2_reduce8i(acc)),
                    _mm256_mul_ps(kscv, _mm256_set1_ps(qd[h])));
                _mm256_storeu_ps(scratch + (int64_t)h * stride + p0, sv);
                const __m256 mx = _mm256_loadu_ps(mxs + 8 * h);
                _mm256_storeu_ps(mxs + 8 * h, _mm256_blendv_ps(mx, _mm256_max_ps(mx, sv), m));
            }
        }
    }
    at2_softmax(scratch, stride, heads, n, mxs, vsc, g);
    at2_values(1, hs, pool, blockBytes, table, bt, vOff, kvDim, g, kv0, kv1, n, scratch, stride, o0);
}

/* attend_kv of the AVX-512 sets (same arguments and scratch), in this set's 8-lane definition. */
void EXPORT(attend_kv)(const uint8_t *pool, int64_t blockBytes, const int32_t *table, int32_t blockTokens,
    int32_t kvDim, int32_t elemBytes, int32_t layer, const float *q, int32_t qOffset, int32_t g, int32_t kv0,
    int32_t kv1, int32_t hs, int32_t n, float scale, float *scratch, float *out, int32_t outOffset)
{
#define AT2_CALL(E, HS) attend_kv2_impl(E, HS, pool, blockBytes, table, blockTokens, kvDim, layer, q + qOffset, g, \
        kv0, kv1, n, scale, scratch, out + outOffset)
#define AQ2_CALL(HS) attend_kv2_q8_impl(HS, pool, blockBytes, table, blockTokens, kvDim, layer, q + qOffset, g, kv0, \
        kv1, n, scale, scratch, out + outOffset)
    if (elemBytes == 1)
    {
        if (hs == 64) AQ2_CALL(64); else if (hs == 128) AQ2_CALL(128); else AQ2_CALL(hs);
    }
    else if (elemBytes == 2)
    {
        if (hs == 64) AT2_CALL(2, 64); else if (hs == 128) AT2_CALL(2, 128); else AT2_CALL(2, hs);
    }
    else
    {
        if (hs == 64) AT2_CALL(4, 64); else if (hs == 128) AT2_CALL(4, 128); else AT2_CALL(4, hs);
    }
#undef AT2_CALL
#undef AQ2_CALL
}
#endif
