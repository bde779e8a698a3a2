/*
 * CPU feature check for the kernel sets in kernels.c, compiled without -m flags so that it runs on any x86-64.
 * __builtin_cpu_supports also checks that the operating system saves the AVX / AVX-512 registers.
 */
#include <stdint.h>

#define STRATA_AVX2_FMA_F16C 1
#define STRATA_AVX512_BW 2
#define STRATA_AVX512_VNNI 4

__attribute__((visibility("default"))) int32_t strata_cpu_features(void)
{
    __builtin_cpu_init();
    int32_t f = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    {
        /* F16C has no __builtin_cpu_supports name in every compiler; every AVX2 + FMA CPU has it */
        f |= STRATA_AVX2_FMA_F16C;
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
    {
        f |= STRATA_AVX512_BW;
        if (__builtin_cpu_supports("avx512vnni"))
        {
            f |= STRATA_AVX512_VNNI;
        }
    }
    return f;
}
