/*
 * A benchmark of attend_kv as a decode node calls it (not part of the build): the 1.1B model's shapes (22 layers,
 * 4 key-value heads of 64, groups of 8), 16-token blocks taken in a shuffled order from a pool on huge pages, one
 * call per layer for one row over n positions, and a 96 MB sweep between steps so that the keys and values come from
 * memory as they do after a step's weight stream. Prints the best and mean step of 22 calls, and with DUMP=file
 * writes the last step's outputs (to compare two builds of the kernel byte for byte).
 *
 *   gcc -O3 -std=gnu11 -DISA=avx512vnni -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512dq -mavx2 -mfma -mf16c \
 *       compute-node/src/main/c/bench/attend_bench.c -o /tmp/attend_bench -lm
 *   taskset -c 1 /tmp/attend_bench N STEPS [ELEMENT_BYTES: 1 (8-bit), 2 (F16) or 4 (F32)]
 *
 * (-DISA=avx2 -mavx2 -mfma -mf16c for the AVX2 set; -DKSRC='"other/kernels.c"' for another copy of the kernels.)
 */
#include "bench.h"

int main(int argc, char **argv)
{
    const int n = argc > 1 ? atoi(argv[1]) : 2000;
    const int steps = argc > 2 ? atoi(argv[2]) : 30;
    const int e = argc > 3 ? atoi(argv[3]) : 1;
    const int layers = 22, kvHeads = 4, g = 8, hs = 64, bt = 16, kvDim = kvHeads * hs;
    if (n < 1 || steps < 2 || (e != 1 && e != 2 && e != 4))
    {
        fprintf(stderr, "usage: attend_bench N STEPS [1|2|4]\n");
        return 2;
    }
    const int64_t region = e == 1 ? (int64_t)bt * kvDim + (int64_t)bt * kvHeads * 4 : (int64_t)bt * kvDim * e;
    const int64_t blockBytes = 2 * layers * region;
    const int blocks = (n + bt - 1) / bt, poolBlocks = 4 * blocks + 64;
    uint8_t *pool = huge((size_t)poolBlocks * blockBytes);
    srand(1);
    for (int64_t b = 0; b < poolBlocks; b++)
    {
        for (int l = 0; l < 2 * layers; l++)
        {
            uint8_t *r = pool + b * blockBytes + l * region;
            for (int i = 0; i < bt * kvDim; i++)
            {
                const float x = (rand() % 2000 - 1000) * 0.002f;
                if (e == 1)
                {
                    r[i] = (uint8_t)(rand() % 200 - 100);
                }
                else if (e == 2)
                {
                    ((uint16_t *)r)[i] = _cvtss_sh(x, 0);
                }
                else
                {
                    ((float *)r)[i] = x;
                }
            }
            if (e == 1)
            {
                for (int i = 0; i < bt * kvHeads; i++)
                {
                    ((float *)(r + (int64_t)bt * kvDim))[i] = 0.01f + 0.001f * (i % 7);
                }
            }
        }
    }
    /* the sequence's blocks: distinct, in a shuffled order, as a pool hands them out after some churn */
    int *perm = malloc(sizeof(int) * poolBlocks);
    int32_t *table = malloc(sizeof(int32_t) * blocks);
    for (int i = 0; i < poolBlocks; i++)
    {
        perm[i] = i;
    }
    for (int i = poolBlocks - 1; i > 0; i--)
    {
        const int j = rand() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < blocks; i++)
    {
        table[i] = perm[i];
    }
    float *q = malloc(sizeof(float) * kvHeads * g * hs);
    float *out = malloc(sizeof(float) * kvHeads * g * hs);
    float *scratch = malloc(sizeof(float) * kvHeads * (g + 1) * ((n + 15) & ~15));
    for (int i = 0; i < kvHeads * g * hs; i++)
    {
        q[i] = sinf(i * 0.37f);
    }
    const size_t sweepBytes = (size_t)96 << 20;
    uint8_t *sweep = huge(sweepBytes);
    const char *dump = getenv("DUMP");
    double best = 1e9, sum = 0;
    for (int s = 0; s < steps; s++)
    {
        volatile uint64_t touched = 0;
        for (size_t i = 0; i < sweepBytes; i += 64)
        {
            touched += sweep[i];
        }
        const double t0 = now();
        for (int l = 0; l < layers; l++)
        {
            EXPORT_NAME(attend_kv)(pool, blockBytes, table, bt, kvDim, e, l, q, 0, g, 0, kvHeads, hs, n, 0.125f,
                scratch, out, 0);
            if (dump != NULL && s == steps - 1)
            {
                FILE *f = fopen(dump, l == 0 ? "wb" : "ab");
                fwrite(out, sizeof(float), (size_t)kvHeads * g * hs, f);
                fclose(f);
            }
        }
        const double t = now() - t0;
        if (s > 0) /* the first step warms up */
        {
            sum += t;
            best = t < best ? t : best;
        }
    }
    printf("attend_kv, %d-byte elements, %d positions, %d layers: best %.3f ms, mean %.3f ms a step\n", e, n, layers,
        best * 1e3, sum / (steps - 1) * 1e3);
    return 0;
}
