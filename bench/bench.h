/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what every benchmark program shares: clocks (wall and CPU),
 * resident memory, a seeded random generator, a hang guard, and the one
 * output format.
 *
 * Output: every result is one line "name value unit" on stdout, nothing
 * else; diagnostics go to stderr. A program that finds its results wrong
 * (a callback count off, a cancelled timer that fired) says so on stderr
 * and exits 1 without printing a result.
 */
#ifndef COIL_BENCH_H
#define COIL_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/*
 * Instruction counts (bench/instr.sh): the copies of the programs built
 * with -DBENCH_INSTR run under callgrind with --collect-atstart=no, and a
 * program calls bench_instr_toggle() right after it reads the clock that
 * starts its timed interval and right before the one that ends it, so
 * that only what it times is counted (not the set-up, such as the timer
 * benchmarks' arrays of deadlines, nor the tear-down). Nothing at all in
 * the ordinary builds.
 */
#ifdef BENCH_INSTR
#include <valgrind/callgrind.h>
#define bench_instr_toggle() CALLGRIND_TOGGLE_COLLECT
#else
#define bench_instr_toggle() ((void)0)
#endif

/* Monotonic wall clock, ns. */
static inline int64_t bench_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time of the process, user + system, ns (getrusage). */
static inline int64_t bench_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* One "Vm...:  N kB" field of /proc/self/status, in bytes; -1 if absent. */
static inline int64_t bench_status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t n = strlen(field);
    int64_t v = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtoll(line + n + 1, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

/* /proc/self/status's field in bytes, else the peak RSS from getrusage
 * (the only figure there is without /proc). */
static inline int64_t bench_status_or_maxrss(const char *field)
{
    int64_t bytes = bench_status_bytes(field);
    if (bytes < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        bytes = (int64_t)ru.ru_maxrss * 1024;
    }
    return bytes;
}

/*
 * The current resident set, bytes. Also resets the peak ("high water
 * mark") to it where the kernel allows (clear_refs 5), so a later
 * bench_peak_rss() sees only what grew after this call.
 */
static inline int64_t bench_rss_baseline(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "5", 1) != 1)
            fprintf(stderr, "bench: cannot reset peak RSS: %s\n",
                    strerror(errno));
        close(fd);
    }
    return bench_status_or_maxrss("VmRSS");
}

/* The peak resident set, bytes (VmHWM, else ru_maxrss). */
static inline int64_t bench_peak_rss(void)
{
    return bench_status_or_maxrss("VmHWM");
}

/* The lowest of reps results of run (ns per operation): the run least
 * disturbed by the rest of a shared machine. */
static inline double bench_best_of(int reps, double (*run)(void))
{
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double ns = run();
        if (r == 0 || ns < best)
            best = ns;
    }
    return best;
}

/* splitmix64: small, fast, and the same sequence everywhere. */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

#define BENCH_SEED 0x5eed0c011u

/*
 * Fill delays[0..n) with the timer benchmark's deadlines: uniform in
 * [0, max_ns], from the fixed seed, so every implementation gets the
 * same sequence. Writing them also touches the array's pages.
 */
static inline void bench_fill_delays(int64_t *delays, size_t n, int64_t max_ns)
{
    uint64_t state = BENCH_SEED;
    for (size_t i = 0; i < n; i++)
        delays[i] = (int64_t)(bench_rand(&state) % (uint64_t)(max_ns + 1));
}

/* Allocate n zeroed bytes and touch every page; exit on failure. */
static inline void *bench_alloc_touched(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    memset(p, 0, n);
    return p;
}

static void bench_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "bench: timed out, giving up\n";
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    (void)r;
    _exit(2);
}

/* Kill the program if it runs longer than seconds (a loop that hangs). */
static inline void bench_guard(unsigned seconds)
{
    signal(SIGALRM, bench_on_alarm);
    alarm(seconds);
}

/* Report a failure on stderr and exit 1. */
#define bench_fail(...)                                                        \
    do {                                                                       \
        fprintf(stderr, "bench: " __VA_ARGS__);                                \
        fputc('\n', stderr);                                                   \
        exit(1);                                                               \
    } while (0)

/* The port of a server's command line "NAME PORT", or exit 2 with a
 * usage line. */
static inline int bench_port_arg(int argc, char **argv, const char *name)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", name);
        exit(2);
    }
    return (int)port;
}

/* Print one result line. */
static inline void bench_print(const char *name, double value, const char *unit)
{
    printf("%s %.1f %s\n", name, value, unit);
    fflush(stdout);
}

/* The number s says (what names it in the message), in [lo, hi]; exits
 * with a message if it is not one. */
static inline long bench_parse_long(const char *s, const char *what, long lo,
                                    long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        bench_fail("bad %s '%s' (want %ld..%ld)", what, s, lo, hi);
    return v;
}

#endif /* COIL_BENCH_H */
