/*
 * A benchmark of the repacked Q4_0 product (mm_q4_0r) as a decode or prefill step calls it (not part of the build):
 * the 1.1B model's 22 layers of projections (q 2048 x 2048, k and v 256 x 2048, o 2048 x 2048, gate and up
 * 5632 x 2048, down 2048 x 5632: 545 MB of weights, so each step streams them from memory as a decode step does), one
 * call per tensor for T tokens, their activations quantized once before the timed steps. ONLY_COLS=2048 or 5632
 * times only the tensors of rows that long. With "cache" as the mode, the calls with rows of 2048 go to one
 * 256 x 2048 tensor (288 KB, held in L2; CACHE_ROWS=16 takes one group of 16 rows, 18 KB, held in L1), which gives
 * the arithmetic alone. Prints, per token count, the best and mean step and weights x tokens per second; with
 * DUMP=file writes every output of the last step (to compare two builds byte for byte).
 *
 *   gcc -O3 -std=gnu11 -DISA=avx512vnni -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512dq -mavx2 -mfma -mf16c \
 *       compute-node/src/main/c/bench/product_bench.c -o /tmp/product_bench -lm
 *   taskset -c 1 /tmp/product_bench STEPS mem|cache T1 [T2 ...]
 *
 * (-DISA=avx2 -mavx2 -mfma -mf16c for the AVX2 set; -DKSRC='"other/kernels.c"' for another copy of the kernels.)
 */
#include "bench.h"

/* rows x cols of random Q4_0 (scales 0.001-0.017), repacked */
static void fill_q4_0(uint8_t *w, int rows, int cols)
{
    const int nb = cols / QK8_0;
    for (int64_t r = 0; r < rows; r++)
    {
        for (int b = 0; b < nb; b++)
        {
            uint8_t *blk = w + (r * nb + b) * Q4_0_BYTES;
            const uint16_t h = _cvtss_sh(0.001f + 0.001f * (rand() % 17), 0);
            memcpy(blk, &h, 2);
            for (int i = 0; i < 16; i++)
            {
                blk[2 + i] = (uint8_t)rand();
            }
        }
    }
    EXPORT_NAME(repack_q4_0)(w, rows, cols);
}

int main(int argc, char **argv)
{
    if (argc < 4)
    {
        fprintf(stderr, "usage: product_bench STEPS mem|cache T1 [T2 ...]\n");
        return 2;
    }
    const int steps = atoi(argv[1]);
    const int cache = strcmp(argv[2], "cache") == 0;
    const int layers = 22, dim = 2048, hidden = 5632;
    const int kv = getenv("CACHE_ROWS") != NULL ? atoi(getenv("CACHE_ROWS")) : 256; /* cache mode: rows of its tensor */
    const int shapes[7][2] = {{dim, dim}, {kv, dim}, {kv, dim}, {dim, dim}, {hidden, dim}, {hidden, dim}, {dim, hidden}};
    int64_t bytes = 0;
    for (int s = 0; s < 7; s++)
    {
        bytes += (int64_t)shapes[s][0] * shapes[s][1] / QK8_0 * Q4_0_BYTES;
    }
    srand(1);
    uint8_t *w;
    int64_t offsets[7];
    if (cache)
    {
        w = huge((size_t)kv * dim / QK8_0 * Q4_0_BYTES);
        fill_q4_0(w, kv, dim);
    }
    else
    {
        w = huge((size_t)(bytes * layers));
        int64_t at = 0;
        for (int l = 0; l < layers; l++)
        {
            for (int s = 0; s < 7; s++)
            {
                fill_q4_0(w + at, shapes[s][0], shapes[s][1]);
                at += (int64_t)shapes[s][0] * shapes[s][1] / QK8_0 * Q4_0_BYTES;
            }
        }
    }
    int64_t at = 0;
    for (int s = 0; s < 7; s++)
    {
        offsets[s] = at;
        at += (int64_t)shapes[s][0] * shapes[s][1] / QK8_0 * Q4_0_BYTES;
    }
    /* the activations, quantized once for each row length (a step quantizes each input once, outside this loop) */
    const int maxT = 64;
    float *x = malloc(sizeof(float) * maxT * hidden);
    int8_t *qs[2];
    float *d[2];
    int32_t *aux[2];
    for (int i = 0; i < maxT * hidden; i++)
    {
        x[i] = sinf(i * 0.37f) * (1 + i % 5);
    }
    for (int c = 0; c < 2; c++)
    {
        const int cols = c == 0 ? dim : hidden;
        qs[c] = aligned_alloc(64, (size_t)maxT * cols);
        d[c] = malloc(sizeof(float) * maxT * cols / QK8_0);
        aux[c] = malloc(sizeof(int32_t) * maxT * cols / 4);
        for (int t = 0; t < maxT; t++)
        {
            EXPORT_NAME(quantize_q8_0)(x + (int64_t)t * cols, cols, qs[c] + (int64_t)t * cols,
                d[c] + (int64_t)t * cols / QK8_0, aux[c] + (int64_t)t * cols / 4, 8);
        }
    }
    float *out = aligned_alloc(64, sizeof(float) * maxT * hidden);
    const char *dump = getenv("DUMP");
    const int only = getenv("ONLY_COLS") != NULL ? atoi(getenv("ONLY_COLS")) : 0; /* mem mode: only these tensors */
    for (int a = 3; a < argc; a++)
    {
        const int tokens = atoi(argv[a]);
        if (tokens < 1 || tokens > maxT)
        {
            fprintf(stderr, "tokens must be 1-%d\n", maxT);
            return 2;
        }
        double best = 1e9, sum = 0;
        for (int step = 0; step < steps; step++)
        {
            const double t0 = now();
            for (int l = 0; l < layers; l++)
            {
                for (int s = 0; s < 7; s++)
                {
                    const int rows = shapes[s][0], cols = shapes[s][1];
                    const int c = cols == dim ? 0 : 1;
                    const uint8_t *tw = cache ? w : w + (int64_t)l * bytes + offsets[s];
                    const int r = cache ? (rows < kv ? rows : kv) : rows;
                    const int64_t rowBytes = (int64_t)cols / QK8_0 * Q4_0_BYTES;
                    if (cache ? cols != dim : only != 0 && cols != only)
                    {
                        continue;
                    }
                    EXPORT_NAME(mm_q4_0r)(tw, 0, rowBytes, r, cols, qs[c], d[c], aux[c], tokens, out, 0, r);
                    if (dump != NULL && step == steps - 1)
                    {
                        FILE *f = fopen(dump, l == 0 && s == 0 && a == 3 ? "wb" : "ab");
                        fwrite(out, sizeof(float), (size_t)r * tokens, f);
                        fclose(f);
                    }
                }
            }
            const double t = now() - t0;
            if (step > 0)
            {
                sum += t;
                best = t < best ? t : best;
            }
        }
        double weights = 0; /* weights of one step: the rows of each call times its columns */
        for (int s = 0; s < 7; s++)
        {
            const int rows = shapes[s][0], cols = shapes[s][1];
            weights += cache ? (cols == dim ? (double)(rows < kv ? rows : kv) * cols : 0)
                             : only == 0 || cols == only ? (double)rows * cols : 0;
        }
        weights *= layers;
        printf("tokens %2d: best %7.2f ms, mean %7.2f ms a step; %6.1f G weight-tokens/s (best)\n", tokens, best * 1e3,
            sum / (steps - 1) * 1e3, weights * tokens / best * 1e-9);
        fflush(stdout);
    }
    return 0;
}
