/*
 * What the C benchmarks of this folder share (not part of the build): the kernels, included whole (KSRC names another
 * copy; ../kernels.c by default), a monotonic clock, and memory on huge pages.
 */
#ifndef STRATA_BENCH_H
#define STRATA_BENCH_H
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#ifndef KSRC
#define KSRC "../kernels.c"
#endif
#include KSRC

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* n bytes of anonymous memory on huge pages where the kernel gives them, every byte written once (so, 1) */
static void *huge(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
    {
        perror("mmap");
        exit(1);
    }
    madvise(p, n, MADV_HUGEPAGE);
    memset(p, 1, n);
    return p;
}
#endif
