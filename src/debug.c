/* SPDX-License-Identifier: MIT */
/*
 * debug.c - debug mode's part of the loop: the flag, the thread a loop
 * belongs to, the timed batch, the watchdog that samples a slow step,
 * and the quarantine of freed objects.
 *
 * The watchdog is one thread per loop in debug mode, made on its first
 * run and joined at its close. The loop thread publishes the step it
 * runs (a sequence number and the real time it began); the watchdog
 * wakes four times per slow threshold, and when one step has run longer
 * than the threshold it asks for a sample once: SIGURG to the loop
 * thread, whose handler records the native backtrace and the running
 * stack's owner (the task's name) into the watchdog. The loop thread
 * reports when the step ends, with the sample if it belongs to that
 * step. backtrace() is called once before the first sample, so that
 * the handler never loads the unwinder itself (not async-signal-safe).
 *
 * Debug mode's own records (the watchdog, the quarantine's) come from
 * malloc, not the replaceable allocator: turning debug mode on does not
 * change what a program's allocator sees (its out-of-memory tests run
 * the same).
 */
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "debug_internal.h"
#include "loop_internal.h"
#include "sys.h"

#define SAMPLE_SIGNAL SIGURG
#define SAMPLE_FRAMES 32
#define QUARANTINE_MAX 4096
#define SLOW_DEFAULT (100 * 1000 * 1000LL)

struct coil__watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool have_target;          /* a run is on: target is its thread */
    pthread_t target;
    _Atomic int64_t slow_ns;
    _Atomic int64_t step_began; /* real ns; 0: no step running */
    _Atomic uint64_t step_seq;
    _Atomic uint64_t want_seq;  /* a sample was asked for this step */
    _Atomic uint64_t got_seq;   /* and taken */
    /* Written by the handler before got_seq (release). */
    int nframes;
    void *frames[SAMPLE_FRAMES];
    char owner[64];
};

struct coil__quarantined {
    struct coil__quarantined *next;
    void *obj;
    void (*release)(struct coil_loop *loop, void *obj);
};

static COIL__TLS char token;
static COIL__TLS struct coil__watchdog *wd_here;

const void *coil__thread_token(void)
{
    return &token;
}

/* ------------------------------------------------------------------ */
/* Naming code                                                          */
/* ------------------------------------------------------------------ */

/*
 * The dynamic symbol table (dladdr) names only exported functions; a
 * program's static functions and the library's own are in the full
 * symbol table, .symtab, unless the file was stripped. Read it from the
 * file, once per module (mapped for the life of the process: debug mode
 * only, at report time, never in a signal handler).
 */
#define MAX_MODULES 32

struct module {
    char *path;
    const unsigned char *map; /* NULL: no usable .symtab */
    size_t len;
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module modules[MAX_MODULES];
static int nmodules;

static const unsigned char *map_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    void *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(Elf64_Ehdr))
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return NULL;
    *len = (size_t)st.st_size;
    return m;
}

static const struct module *module_of(const char *path)
{
    for (int i = 0; i < nmodules; i++)
        if (strcmp(modules[i].path, path) == 0)
            return &modules[i];
    if (nmodules == MAX_MODULES)
        return NULL;
    struct module *m = &modules[nmodules];
    m->path = strdup(path);
    if (!m->path)
        return NULL;
    m->map = map_file(path, &m->len);
    nmodules++;
    return m;
}

/* The function of .symtab containing the address (off: relative to the
 * module's base, for a shared object or PIE; abs: for a fixed-address
 * executable); *within: how far into it. */
static const char *symtab_find(const struct module *m, uintptr_t off,
                               uintptr_t abs, uintptr_t *within)
{
    const unsigned char *f = m->map;
    if (!f || memcmp(f, ELFMAG, SELFMAG) != 0 || f[EI_CLASS] != ELFCLASS64)
        return NULL;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)(const void *)f;
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) ||
        eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > m->len)
        return NULL;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(const void *)(f + eh->e_shoff);
    uintptr_t key = eh->e_type == ET_EXEC ? abs : off;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum)
            continue;
        const Elf64_Shdr *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > m->len ||
            strs->sh_offset + strs->sh_size > m->len)
            return NULL;
        const Elf64_Sym *sym =
            (const Elf64_Sym *)(const void *)(f + sh[i].sh_offset);
        size_t nsym = sh[i].sh_size / sizeof(Elf64_Sym);
        for (size_t k = 0; k < nsym; k++) {
            if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC ||
                key < sym[k].st_value ||
                key >= sym[k].st_value + sym[k].st_size ||
                sym[k].st_name >= strs->sh_size)
                continue;
            *within = key - (uintptr_t)sym[k].st_value;
            return (const char *)f + strs->sh_offset + sym[k].st_name;
        }
    }
    return NULL;
}

void coil__debug_symbol(const void *addr, char *buf, size_t n)
{
    Dl_info info;
    if (!addr || !dladdr(addr, &info)) {
        snprintf(buf, n, "%p", addr);
        return;
    }
    if (info.dli_sname && info.dli_saddr) {
        snprintf(buf, n, "%s+0x%zx", info.dli_sname,
                 (size_t)((const char *)addr - (const char *)info.dli_saddr));
        return;
    }
    uintptr_t off = (uintptr_t)addr - (uintptr_t)info.dli_fbase;
    const char *base = info.dli_fname ? strrchr(info.dli_fname, '/') : NULL;
    base = base ? base + 1 : info.dli_fname ? info.dli_fname : "?";
    if (info.dli_fname && info.dli_fname[0]) {
        pthread_mutex_lock(&modules_lock);
        const struct module *m = module_of(info.dli_fname);
        uintptr_t within = 0;
        const char *name =
            m ? symtab_find(m, off, (uintptr_t)addr, &within) : NULL;
        if (name) {
            snprintf(buf, n, "%s+0x%zx", name, (size_t)within);
            pthread_mutex_unlock(&modules_lock);
            return;
        }
        pthread_mutex_unlock(&modules_lock);
    }
    snprintf(buf, n, "%s+0x%zx", base, (size_t)off);
}

/* ------------------------------------------------------------------ */
/* The sample                                                           */
/* ------------------------------------------------------------------ */

/*
 * The loops running in debug mode, for the two signal handlers: the
 * sampler (SIGURG, sent by a watchdog to its loop's thread) and the dump
 * signal (SIGQUIT unless set: asks every debug loop for a dump, through
 * a flag and the loop's own wake-up channel, so that the dump runs on
 * the loop thread between callbacks). Both handlers are installed when
 * the first debug loop starts running, only over the default
 * disposition, and the previous ones put back when the last one stops.
 * The handlers read the table with atomics and count themselves in
 * `busy`; a loop leaving waits until no handler is inside.
 */
#define MAX_RUNNING 64

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct coil_loop *) running[MAX_RUNNING];
static atomic_int busy;
static int nrunning;
static bool sample_ours, dump_ours;
static int dump_installed; /* the signal dump_ours refers to */
static struct sigaction sample_prev, dump_prev;
static atomic_int dump_signal = SIGQUIT;

static void on_dump(int sig)
{
    int saved = errno;
    int found = 0;
    atomic_fetch_add(&busy, 1);
    for (int i = 0; i < MAX_RUNNING; i++) {
        struct coil_loop *loop = atomic_load(&running[i]);
        if (!loop)
            continue;
        found++;
        atomic_store(&loop->debug.dump_asked, true);
        uint64_t one = 1;
        ssize_t r;
        do
            r = write(coil__threadsafe_write_fd(loop), &one, sizeof(one));
        while (r < 0 && errno == EINTR);
    }
    atomic_fetch_sub(&busy, 1);
    if (!found) {
        /* No debug loop runs (the handler was put back by someone who
         * had saved it): the signal's own default action, as if we had
         * never been there. */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    errno = saved;
}

static void on_sample(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    int saved = errno;
    struct coil__watchdog *wd = wd_here;
    if (wd) {
        uint64_t want = atomic_load(&wd->want_seq);
        if (want && want != atomic_load(&wd->got_seq)) {
            wd->nframes = backtrace(wd->frames, SAMPLE_FRAMES);
            const struct coil__stack *s = coil__stack_running;
            const char *o = s && s->owner ? s->owner : "";
            size_t i = 0;
            for (; o[i] && i + 1 < sizeof(wd->owner); i++)
                wd->owner[i] = o[i];
            wd->owner[i] = '\0';
            atomic_store_explicit(&wd->got_seq, want, memory_order_release);
        }
    }
    errno = saved;
}

static bool is_default(const struct sigaction *a)
{
    return !(a->sa_flags & SA_SIGINFO) && a->sa_handler == SIG_DFL;
}

/* Install a handler over the default disposition only. */
static bool take_signal(int sig, struct sigaction *sa, struct sigaction *prev)
{
    if (sigaction(sig, NULL, prev) != 0 || !is_default(prev))
        return false;
    return sigaction(sig, sa, NULL) == 0;
}

static void install_handlers(void)
{
    /* Load the unwinder now, not in the handler. */
    void *warm[2];
    (void)backtrace(warm, 2);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_sigaction = on_sample;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sample_ours = take_signal(SAMPLE_SIGNAL, &sa, &sample_prev);
    int ds = atomic_load(&dump_signal);
    dump_ours = false;
    if (ds > 0 && ds != SAMPLE_SIGNAL) {
        memset(&sa, 0, sizeof(sa));
        sigemptyset(&sa.sa_mask);
        sa.sa_handler = on_dump;
        sa.sa_flags = SA_RESTART;
        dump_ours = take_signal(ds, &sa, &dump_prev);
        dump_installed = ds;
    }
}

/* Put back what was there, unless something replaced our handler since
 * (the program, or coil's own signal handling): that one stays. */
static void restore_handlers(void)
{
    struct sigaction cur;
    if (sample_ours && sigaction(SAMPLE_SIGNAL, NULL, &cur) == 0 &&
        (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sample)
        (void)sigaction(SAMPLE_SIGNAL, &sample_prev, NULL);
    if (dump_ours && sigaction(dump_installed, NULL, &cur) == 0 &&
        !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == on_dump)
        (void)sigaction(dump_installed, &dump_prev, NULL);
    sample_ours = dump_ours = false;
}

static void reg_add(struct coil_loop *loop)
{
    if (loop->debug.registered)
        return; /* turned on again while it runs */
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < MAX_RUNNING; i++) {
        struct coil_loop *none = NULL;
        if (atomic_compare_exchange_strong(&running[i], &none, loop)) {
            if (nrunning++ == 0)
                install_handlers();
            loop->debug.registered = true;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

static void reg_remove(struct coil_loop *loop)
{
    if (!loop->debug.registered)
        return;
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < MAX_RUNNING; i++) {
        struct coil_loop *me = loop;
        if (atomic_compare_exchange_strong(&running[i], &me, NULL))
            break;
    }
    loop->debug.registered = false;
    while (atomic_load(&busy))
        ;
    if (--nrunning == 0)
        restore_handlers();
    pthread_mutex_unlock(&reg_lock);
}

int coil_set_dump_signal(int signum)
{
    if (signum < 0 || signum >= NSIG || signum == SIGKILL ||
        signum == SIGSTOP || signum == SAMPLE_SIGNAL)
        return -EINVAL;
    atomic_store(&dump_signal, signum);
    return 0;
}

/* Whether our sampler is still the handler installed. */
static bool sampler_installed(void)
{
    struct sigaction cur;
    return sample_ours && sigaction(SAMPLE_SIGNAL, NULL, &cur) == 0 &&
           (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sample;
}

/* ------------------------------------------------------------------ */
/* The watchdog thread                                                  */
/* ------------------------------------------------------------------ */

static void *watchdog_main(void *arg)
{
    struct coil__watchdog *wd = arg;
    pthread_mutex_lock(&wd->mu);
    while (!wd->stop) {
        int64_t period = atomic_load(&wd->slow_ns) / 4;
        if (period < 1000000)
            period = 1000000;
        if (period > 250000000)
            period = 250000000;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + period;
        ts.tv_sec = at / 1000000000;
        ts.tv_nsec = at % 1000000000;
        pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
        if (wd->stop || !wd->have_target)
            continue;
        /* The step's number, its start, and the number again: both of
         * the same step, or the next round will see. */
        uint64_t seq = atomic_load(&wd->step_seq);
        int64_t began = atomic_load(&wd->step_began);
        if (!began || atomic_load(&wd->step_seq) != seq ||
            atomic_load(&wd->want_seq) == seq)
            continue;
        if (coil__clock_real() - began < atomic_load(&wd->slow_ns))
            continue;
        atomic_store(&wd->want_seq, seq);
        if (sampler_installed())
            pthread_kill(wd->target, SAMPLE_SIGNAL);
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

static int watchdog_start(struct coil_loop *loop)
{
    struct coil__loop_debug *d = &loop->debug;
    if (d->wd)
        return 0;
    struct coil__watchdog *wd = calloc(1, sizeof(*wd));
    if (!wd)
        return -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wd->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&wd->mu, NULL);
    atomic_init(&wd->slow_ns, d->slow_ns);
    /* The watchdog takes no signal meant for the process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = COIL__THREAD_CREATE(&wd->thread, NULL, watchdog_main, wd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        pthread_cond_destroy(&wd->cv);
        pthread_mutex_destroy(&wd->mu);
        free(wd);
        return -EAGAIN;
    }
    d->wd = wd;
    return 0;
}

static void watchdog_stop(struct coil_loop *loop)
{
    struct coil__watchdog *wd = loop->debug.wd;
    if (!wd)
        return;
    loop->debug.wd = NULL;
    if (wd_here == wd)
        wd_here = NULL;
    pthread_mutex_lock(&wd->mu);
    wd->stop = true;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
    pthread_cond_destroy(&wd->cv);
    pthread_mutex_destroy(&wd->mu);
    free(wd);
}

static void watchdog_target(struct coil__watchdog *wd, bool on)
{
    pthread_mutex_lock(&wd->mu);
    wd->have_target = on;
    if (on)
        wd->target = pthread_self();
    pthread_mutex_unlock(&wd->mu);
    wd_here = on ? wd : NULL;
}

/* ------------------------------------------------------------------ */
/* The loop's part                                                      */
/* ------------------------------------------------------------------ */

void coil__debug_check_thread(struct coil_loop *loop, const char *call)
{
    if (loop->debug.owner != coil__thread_token())
        coil__misuse(loop,
                     "%s called on a thread that is not its loop's (a "
                     "loop-only call; use the *_threadsafe calls)",
                     call);
}

void coil__debug_init(struct coil_loop *loop)
{
    struct coil__loop_debug *d = &loop->debug;
    loop->debug_on = coil__debug_env();
    d->slow_ns = SLOW_DEFAULT;
    d->owner = coil__thread_token();
}

static void quarantine_release_all(struct coil_loop *loop)
{
    struct coil__loop_debug *d = &loop->debug;
    struct coil__quarantined *q;
    while ((q = d->q_head)) {
        d->q_head = q->next;
        q->release(loop, q->obj);
        free(q);
    }
    d->q_tail = NULL;
    d->q_len = 0;
}

void coil__debug_close(struct coil_loop *loop)
{
    watchdog_stop(loop);
}

void coil__debug_term(struct coil_loop *loop)
{
    watchdog_stop(loop);
    quarantine_release_all(loop);
}

int coil__debug_set(struct coil_loop *loop, bool on)
{
    struct coil__loop_debug *d = &loop->debug;
    if (on && loop->state == COIL__LOOP_RUNNING &&
        coil__loop_running_here(loop)) {
        int err = watchdog_start(loop);
        if (err)
            return err;
        watchdog_target(d->wd, true);
        reg_add(loop);
    }
    loop->debug_on = on;
    return 0;
}

void coil__debug_enter(struct coil_loop *loop)
{
    struct coil__loop_debug *d = &loop->debug;
    d->owner = coil__thread_token();
    if (!loop->debug_on)
        return;
    if (watchdog_start(loop) != 0 && !d->wd_failed_said) {
        d->wd_failed_said = true; /* once a loop; each run tries again */
        coil__log(loop, COIL_LOG_WARNING,
                  "debug mode: the watchdog thread could not be started; "
                  "slow steps are reported without a sample");
    }
    if (d->wd)
        watchdog_target(d->wd, true);
    reg_add(loop);
}

void coil__debug_leave(struct coil_loop *loop)
{
    if (loop->debug.wd)
        watchdog_target(loop->debug.wd, false);
    reg_remove(loop);
}

int coil_loop_set_slow_duration(coil_loop_t *loop, int64_t ns)
{
    if (!loop || ns <= 0)
        return -EINVAL;
    loop->debug.slow_ns = ns;
    if (loop->debug.wd)
        atomic_store(&loop->debug.wd->slow_ns, ns);
    return 0;
}

int64_t coil_loop_slow_duration(const coil_loop_t *loop)
{
    return loop ? loop->debug.slow_ns : 0;
}

bool coil_loop_debug(const coil_loop_t *loop)
{
    return loop && loop->debug_on;
}

/* ------------------------------------------------------------------ */
/* The timed batch                                                      */
/* ------------------------------------------------------------------ */

/* Write the sample's frames, from the interrupted one, as "a < b < c". */
static void format_sample(const struct coil__watchdog *wd, char *buf,
                          size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    /* [0] is the handler, [1] the kernel's return trampoline. */
    int shown = 0;
    for (int i = 2; i < wd->nframes && shown < 8 && off + 1 < n; i++) {
        char sym[128];
        /* Return addresses point after the call: name the call. */
        coil__debug_symbol((const char *)wd->frames[i] - (i > 2), sym,
                           sizeof(sym));
        int w = snprintf(buf + off, n - off, "%s%s", shown ? " < " : "",
                         sym);
        if (w < 0)
            break;
        off += (size_t)w;
        shown++;
    }
}

static void describe(const struct coil__loop_debug *d, const void *fn,
                     char *buf, size_t n)
{
    if (d->step_id) {
        char site[80];
        coil__debug_symbol(d->step_site, site, sizeof(site));
        if (snprintf(buf, n, "task '%s' (id %llu, spawned by %s)",
                     d->step_task, (unsigned long long)d->step_id,
                     site) < 0)
            buf[0] = '\0';
        return;
    }
    char sym[80];
    coil__debug_symbol(fn, sym, sizeof(sym));
    snprintf(buf, n, "callback %s", sym);
}

static COIL__COLD void report_slow(struct coil_loop *loop, const void *fn,
                                   int64_t dt, uint64_t seq)
{
    struct coil__loop_debug *d = &loop->debug;
    char what[128];
    describe(d, fn, what, sizeof(what));
    struct coil__watchdog *wd = d->wd;
    char where[768];
    if (wd && atomic_load_explicit(&wd->got_seq, memory_order_acquire) ==
                  seq) {
        format_sample(wd, where, sizeof(where));
    } else if (wd && atomic_load(&wd->want_seq) == seq) {
        snprintf(where, sizeof(where), "%s",
                 sampler_installed()
                     ? "(the sample did not arrive before the step ended)"
                     : "(no sample: SIGURG has another handler)");
    } else if (!wd) {
        snprintf(where, sizeof(where), "(no sample: the watchdog thread "
                                       "could not be started)");
    } else {
        snprintf(where, sizeof(where), "(ended before the watchdog "
                                       "sampled it)");
    }
    coil__log(loop, COIL_LOG_WARNING,
              COIL__SLOW_STEP_REPORT
              "%s ran %.1f ms (threshold %.1f ms); blocked in: "
              "%s",
              what, (double)dt / 1e6, (double)d->slow_ns / 1e6, where);
}

/* A step begins: published for the watchdog; returns its number. */
static uint64_t step_begin(struct coil__loop_debug *d, int64_t t0)
{
    struct coil__watchdog *wd = d->wd;
    d->step_id = 0;
    if (!wd)
        return 0;
    /* Only the loop thread writes these; the watchdog reads them and
     * samples at most once a step: order is all it needs. */
    uint64_t seq =
        atomic_load_explicit(&wd->step_seq, memory_order_relaxed) + 1;
    atomic_store_explicit(&wd->step_began, 0, memory_order_release);
    atomic_store_explicit(&wd->step_seq, seq, memory_order_release);
    atomic_store_explicit(&wd->step_began, t0, memory_order_release);
    return seq;
}

/* The step ends: the longest kept, a slow one reported. fn names a
 * step no task named. */
static void step_end(struct coil_loop *loop, const void *fn, int64_t t0,
                     uint64_t seq)
{
    struct coil__loop_debug *d = &loop->debug;
    int64_t dt = coil__clock_real() - t0;
    if (d->wd)
        atomic_store_explicit(&d->wd->step_began, 0, memory_order_release);
    if (dt > d->longest_ns) {
        d->longest_ns = dt;
        describe(d, fn, d->longest_what, sizeof(d->longest_what));
    }
    if (coil__unlikely(dt >= d->slow_ns))
        report_slow(loop, fn, dt, seq);
}

void coil__debug_run_batch(struct coil_loop *loop)
{
    struct coil__loop_ready *r = &loop->ready;
    while (r->batch_left) {
        r->batch_left--;
        loop->counters.callbacks++;
        struct coil__ready *node = coil__readyq_pop(&r->q);
        bool soon = node->ops == &coil__soon_ops;
        const void *fn =
            soon ? (const void *)coil__container_of(node, struct coil__soon,
                                                    node)
                       ->fn
                 : (const void *)node->ops->run;
        int64_t t0 = coil__clock_real();
        uint64_t seq = step_begin(&loop->debug, t0);
        if (soon)
            coil__soon_run(loop, node);
        else
            node->ops->run(loop, node);
        step_end(loop, fn, t0, seq);
    }
}

void coil__debug_step_task(struct coil_loop *loop, const char *name,
                           uint64_t id, const void *site)
{
    struct coil__loop_debug *d = &loop->debug;
    /* Copied, not formatted (every step pays it). */
    size_t n = strnlen(name, sizeof(d->step_task) - 1);
    memcpy(d->step_task, name, n);
    d->step_task[n] = '\0';
    d->step_id = id;
    d->step_site = site;
}

void coil__debug_call(struct coil_loop *loop, coil_callback_fn fn, void *arg)
{
    loop->counters.callbacks++;
    int64_t t0 = coil__clock_real();
    uint64_t seq = step_begin(&loop->debug, t0);
    fn(arg);
    step_end(loop, (const void *)fn, t0, seq);
}

/* ------------------------------------------------------------------ */
/* The quarantine                                                       */
/* ------------------------------------------------------------------ */

bool coil__debug_quarantine(struct coil_loop *loop, void *obj, size_t size,
                            void (*release)(struct coil_loop *loop,
                                            void *obj))
{
    struct coil__loop_debug *d = &loop->debug;
    if (!loop->debug_on)
        return false;
    struct coil__quarantined *q = malloc(sizeof(*q));
    if (!q)
        return false;
    memset(obj, COIL__POISON, size);
    q->obj = obj;
    q->release = release;
    q->next = NULL;
    if (d->q_tail)
        d->q_tail->next = q;
    else
        d->q_head = q;
    d->q_tail = q;
    if (++d->q_len > QUARANTINE_MAX) {
        struct coil__quarantined *old = d->q_head;
        d->q_head = old->next;
        d->q_len--;
        old->release(loop, old->obj);
        free(old);
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Metrics                                                              */
/* ------------------------------------------------------------------ */

int coil_loop_metrics(const coil_loop_t *loop, coil_loop_metrics_t *out)
{
    if (!loop || !out)
        return -EINVAL;
    const struct coil__loop_counters *c = &loop->counters;
    memset(out, 0, sizeof(*out));
    out->iterations = c->iterations + loop->ticks;
    out->polls = c->polls;
    out->events = c->events;
    out->callbacks = c->callbacks;
    out->task_steps = coil__tasks_steps(loop);
    out->poll_ns = c->poll_ns;
    out->run_ns = c->run_ns;
    if (loop->state == COIL__LOOP_RUNNING)
        out->run_ns += coil__clock_real() - c->run_began -
                       (c->poll_ns - c->poll_in_run);
    out->longest_step_ns = loop->debug.longest_ns;
    snprintf(out->longest_step_what, sizeof(out->longest_step_what), "%s",
             loop->debug.longest_what);
    return 0;
}
