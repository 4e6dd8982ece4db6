/* SPDX-License-Identifier: MIT */
/*
 * stack.c - coroutine stacks (stack.h): one mapping each, a guard below,
 * a per-loop pool, and the overflow report.
 *
 * One mmap per stack and nothing else: the struct coil__stack lives in
 * the top 64 bytes of its own mapping.
 *
 *   mapping + map_size  +---------------------------+  page aligned
 *                       | struct coil__stack (64 B) |
 *   base + size         +---------------------------+  64-byte aligned
 *                       | usable stack: size bytes  |
 *                       |      (grows down)         |
 *   base                +---------------------------+  page aligned
 *                       | guard: COIL__STACK_GUARD  |
 *                       | (1 MiB), whole pages      |
 *   mapping             +---------------------------+
 *
 * The header shares the top page with the first frames, which every
 * stack touches anyway, so it costs no resident page of its own; usable
 * sizes are the request rounded up so that usable + header fill whole
 * pages (>= the request, never less). The mapping is MAP_NORESERVE, so
 * only touched pages cost memory, and MAP_STACK, which also keeps
 * transparent huge pages away (a 2 MiB page per stack would defeat the
 * point).
 *
 * Guard: MADV_GUARD_INSTALL (Linux 6.13+) turns the low pages into
 * no-access markers without splitting the mapping, so a stack is one VMA
 * (or less: neighbours with equal flags merge). An older kernel answers
 * EINVAL; then the whole process switches, for good, to mprotect
 * (PROT_NONE) guards, which cost a second VMA per stack and so run into
 * vm.max_map_count (65530 by default: ~32,000 stacks). A stack is never
 * handed out without a guard: when the kernel refuses, get fails with
 * -ENOMEM, and the reason goes to the log hook (coil/debug.h) at the
 * debug level.
 *
 * Pool: a LIFO of up to max_free returned stacks per pool; the rest are
 * unmapped. Pooled stacks keep their touched pages (no MADV_DONTNEED): a
 * reused stack's first frames are already resident and hot in the TLB and
 * caches, which is the point of pooling. The price is memory: a pool can
 * hold up to max_free times the deepest use its stacks saw (64 x 256 KiB =
 * 16 MiB at worst with the defaults) until the pool is terminated.
 *
 * The guard is large (1 MiB, stack.h says why and what it guarantees)
 * because code built without -fstack-clash-protection moves the stack
 * pointer down by a whole frame at once and may touch the far end first
 * (a call that passes a local buffer pushes its return address below
 * it): a frame larger than the guard would skip it and write into the
 * mapping below, which is usually the top of another task's stack.
 *
 * Overflow: the first stack mapped installs, once per process, a SIGSEGV
 * and SIGBUS handler (SA_ONSTACK, so it runs on the thread's alternate
 * signal stack: the faulting stack is exhausted). For a fault the kernel
 * raised while coil__stack_running is set, the handler looks at the
 * faulting address and at the interrupted stack pointer (from the
 * ucontext, where we know how to read it: Linux on x86-64 and aarch64).
 * It is an overflow of that stack when
 *  - the address is in its guard (the common case), or
 *  - the stack pointer is in its guard: the stack is overflowed, whatever
 *    faulted, or
 *  - the kernel could not write a signal frame (SI_KERNEL, no address)
 *    while the stack pointer was less than SIGFRAME_ROOM above the base:
 *    the frame of a signal handler that does not run on an alternate
 *    stack spilled into the guard (a general-protection fault, which
 *    looks the same, in a task whose stack is that full is reported as
 *    an overflow too), or
 *  - the stack pointer is below the guard, less than COIL__STACK_REACH
 *    below the base, and the address lies between it (less a page, for
 *    the red zone) and the base: a frame larger than the guard, whose
 *    first access beyond it hit memory that faults (a gap, another
 *    stack's guard).
 * Then it writes one line naming the owner and the size, and aborts. Any
 * other fault is not ours: the handler puts back the handler it replaced
 * and returns, so the faulting instruction runs again and faults into it
 * (a signal sent by kill is raised again instead, since it would not
 * recur). From then on overflows go unreported in that process; a program
 * that survives foreign faults should install its handler before coil's.
 *
 * Sanitizers: each stack's usable range is registered with valgrind
 * while mapped. A stack in the pool belongs to no task, so any use of it
 * is a use of a finished task's memory: while pooled, its usable range is
 * poisoned for ASan (from the top down, at most POISON_DEPTH) and
 * unaddressable for memcheck, and the pool makes it usable again (and
 * undefined for memcheck) when it hands it out. The header above the
 * usable range stays accessible: the free list runs through it. Before a
 * stack is pooled or unmapped the rest of its ASan shadow is cleared: a
 * context that never finished leaves poisoned frames (redzones) behind.
 *
 * The system calls are made through four small functions (sys_map,
 * sys_unmap, sys_guard, sys_protect) so each can go through the fault
 * injection seam (sys.h) with a one-line change.
 */
#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"
#include "stack.h"
#include "sys.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define COIL__VALGRIND 1
#endif
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define COIL__MEMCHECK 1
#endif
#endif
#ifndef COIL__VALGRIND
#define VALGRIND_STACK_REGISTER(start, end) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif
#ifndef COIL__MEMCHECK
#define VALGRIND_MAKE_MEM_NOACCESS(addr, len) 0
#define VALGRIND_MAKE_MEM_UNDEFINED(addr, len) 0
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL__ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(COIL__ASAN)
#define COIL__ASAN 1
#endif
#ifdef COIL__ASAN
#include <sanitizer/asan_interface.h>
#endif

/* Linux 6.13's guard regions; glibc's headers may not know it yet. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#ifdef MAP_STACK
#define STACK_MAP_FLAGS                                                        \
    (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK)
#else
#define STACK_MAP_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
#endif

/* Below the stack pointer, what an overflowing function may touch first:
 * x86-64's 128-byte red zone, a stack probe; a page, to be generous. */
#define SP_SLACK 4096

/* The most a signal frame takes below the stack pointer: the red zone,
 * the saved registers and the FPU/vector state (x86-64 with AMX tiles:
 * about 11 KiB). */
#define SIGFRAME_ROOM (16 * 1024)

/* The header's slot at the top of the mapping; keeps the top of the
 * usable area 64-byte aligned. */
#define HEADER ((sizeof(struct coil__stack) + 63) & ~(size_t)63)

/* Stacks a pool keeps for reuse. */
#define POOL_KEEP 64

/* Under ASan, how deep a pooled stack is poisoned from its top (all of a
 * stack up to that size): the shadow costs a byte for every 8 poisoned,
 * which for a pooled 1 GiB stack would be 128 MiB. */
#define POISON_DEPTH ((size_t)8 << 20)

/* Bytes of each thread's alternate signal stack, at least. */
#define ALTSTACK_MIN (64 * 1024)

/* Initial-exec (COIL__TLS): the overflow handler reads it without a
 * __tls_get_addr call, which is not async-signal-safe. */
COIL__TLS struct coil__stack *coil__stack_running;

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

/* Diagnostics go to the log hook at the debug level (COIL_LOG_LEVEL=debug
 * shows them). */
__attribute__((format(printf, 1, 2))) static void debug(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    coil__vlog(NULL, COIL_LOG_DEBUG, fmt, ap);
    va_end(ap);
}

static size_t page_size(void)
{
    /* Asked once: sysconf is a libc call on every spawn otherwise. */
    static atomic_size_t cached;
    size_t p = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!p) {
        p = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&cached, p, memory_order_relaxed);
    }
    return p;
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static size_t guard_size(void)
{
    return round_up(COIL__STACK_GUARD, page_size());
}

/* ------------------------------------------------------------------ */
/* System calls, through the fault-injection seam (sys.h)               */
/* ------------------------------------------------------------------ */

static void *sys_map(size_t len, int flags)
{
    int injected = COIL__FAULT(COIL__SYS_MMAP);
    if (injected) {
        errno = injected;
        return MAP_FAILED;
    }
    return mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
}

static int sys_unmap(void *addr, size_t len)
{
    return munmap(addr, len);
}

static int sys_guard(void *addr, size_t len)
{
    return COIL__SYS(COIL__SYS_MADVISE, madvise(addr, len, MADV_GUARD_INSTALL));
}

static int sys_protect(void *addr, size_t len)
{
    return COIL__SYS(COIL__SYS_MPROTECT, mprotect(addr, len, PROT_NONE));
}

/* ------------------------------------------------------------------ */
/* Guards                                                               */
/* ------------------------------------------------------------------ */

enum { GUARD_UNKNOWN, GUARD_MADVISE, GUARD_MPROTECT };

/* Process-wide: decided by the first madvise guard tried. */
static atomic_int guard_mode;

/*
 * Where madvise guards exist they are still not free: their markers are
 * page-table entries, one per guard page (for 1 MiB, about 2 KiB of page
 * tables and 8 us to install and remove). An mprotect guard costs the
 * same whatever its size (one more mapping, about 2.5 us), but
 * counts against vm.max_map_count. So while fewer than CHEAP_GUARDS
 * stacks are mapped with one (a server's connections, a program's
 * tasks: the common case), a new stack gets an mprotect guard, and the
 * rest madvise guards, which let a million stacks share a few mappings.
 * The budget keeps the mappings this takes (two a stack) well under the
 * default limit of 65,530.
 */
#define CHEAP_GUARDS 8192
static atomic_long cheap_guards;             /* taken */
static atomic_long cheap_budget = CHEAP_GUARDS; /* tests lower it */

/* madvise's answers that mean "no guard regions here", not "no memory":
 * an older kernel (EINVAL), or a sandbox that filters the call. */
static bool no_guard_regions(int err)
{
    return err == EINVAL || err == ENOSYS || err == EPERM;
}

/* Whether valgrind runs us, asked once: a client request costs a few ns,
 * and the pool makes two for every task. */
static bool under_valgrind(void)
{
    static atomic_int known; /* 0: not asked yet, 1: no, 2: yes */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (!k) {
        k = RUNNING_ON_VALGRIND ? 2 : 1;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 2;
}

/* An mprotect guard from the budget above, if it has room; true if so. */
static bool cheap_guard(void *addr, size_t len)
{
    /* valgrind keeps its own table of mappings, and each one added costs
     * it a walk of the table: thousands of split stacks slow it to a
     * crawl, where madvise guards cost it nothing. */
    if (under_valgrind())
        return false;
    if (atomic_fetch_add_explicit(&cheap_guards, 1, memory_order_relaxed) <
            atomic_load_explicit(&cheap_budget, memory_order_relaxed) &&
        sys_protect(addr, len) == 0)
        return true;
    atomic_fetch_sub_explicit(&cheap_guards, 1, memory_order_relaxed);
    return false;
}

/* Guard [addr, addr + len); *cheap: it came from the budget. */
static int install_guard(void *addr, size_t len, bool *cheap)
{
    *cheap = false;
    if (atomic_load_explicit(&guard_mode, memory_order_relaxed) !=
        GUARD_MPROTECT) {
        if (cheap_guard(addr, len)) {
            *cheap = true;
            return 0;
        }
        if (sys_guard(addr, len) == 0) {
            atomic_store_explicit(&guard_mode, GUARD_MADVISE,
                                  memory_order_relaxed);
            return 0;
        }
        int err = errno;
        if (!no_guard_regions(err)) {
            debug("stack: MADV_GUARD_INSTALL failed: %s", strerror(err));
            return -err;
        }
        debug("stack: no guard regions (MADV_GUARD_INSTALL: %s); guard "
              "pages use mprotect from now on",
              strerror(err));
        atomic_store_explicit(&guard_mode, GUARD_MPROTECT,
                              memory_order_relaxed);
    }
    if (sys_protect(addr, len) == 0)
        return 0;
    int err = errno;
    debug("stack: mprotect of a guard page failed: %s%s", strerror(err),
          err == ENOMEM ? " (memory, or vm.max_map_count reached: each "
                          "stack costs two mappings with mprotect guards)"
                        : "");
    return -err;
}

const char *coil__stack_guard_kind(void)
{
    if (atomic_load(&guard_mode) == GUARD_UNKNOWN) {
        /* Nothing decided yet: decide on a scratch mapping. */
        size_t len = guard_size() + page_size();
        void *m = sys_map(len, STACK_MAP_FLAGS);
        if (m != MAP_FAILED) {
            /* madvise itself, not a guard from the budget. */
            if (sys_guard(m, guard_size()) == 0)
                atomic_store(&guard_mode, GUARD_MADVISE);
            else if (no_guard_regions(errno))
                atomic_store(&guard_mode, GUARD_MPROTECT);
            (void)sys_unmap(m, len);
        }
    }
    return atomic_load(&guard_mode) == GUARD_MPROTECT ? "mprotect" : "madvise";
}

/* ------------------------------------------------------------------ */
/* Overflow handler                                                     */
/* ------------------------------------------------------------------ */

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static struct sigaction old_segv, old_bus;

/* Appends s to buf[*len..cap), truncating. */
static void append(char *buf, size_t *len, size_t cap, const char *s)
{
    while (*s && *len < cap)
        buf[(*len)++] = *s++;
}

static void append_size(char *buf, size_t *len, size_t cap, size_t n)
{
    char digits[24];
    size_t i = sizeof(digits);
    digits[--i] = '\0';
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    append(buf, len, cap, digits + i);
}

/* Async-signal-safe: one write(2), then abort(). */
_Noreturn static void report_overflow(const struct coil__stack *s)
{
    char buf[512];
    size_t len = 0, cap = sizeof(buf);
    append(buf, &len, cap, "coil: stack overflow in task '");
    append(buf, &len, cap - 200, s->owner ? s->owner : "(unnamed)");
    append(buf, &len, cap, "' (stack size ");
    append_size(buf, &len, cap, s->size);
    append(buf, &len, cap,
           " bytes); give it a larger stack: coil_task_options_t."
           "stack_size, or coil_loop_set_stack_size()\n");
    ssize_t r = write(STDERR_FILENO, buf, len);
    (void)r;
    abort();
}

/* Not an overflow of ours: hand the signal to whoever had it before. */
static void pass_on(int sig, const siginfo_t *si)
{
    (void)sigaction(sig, sig == SIGBUS ? &old_bus : &old_segv, NULL);
    /* A real fault recurs when we return; a sent signal would not. */
    if (si->si_code <= 0)
        (void)raise(sig);
}

/* The interrupted code's stack pointer; 0 where we cannot read it. */
static uintptr_t interrupted_sp(const void *ucv)
{
#if defined(__linux__) && defined(__x86_64__)
    const ucontext_t *uc = ucv;
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__linux__) && defined(__aarch64__)
    const ucontext_t *uc = ucv;
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)ucv;
    return 0;
#endif
}

/* Whether a fault (si), with the stack pointer at sp, is an overflow of
 * s (see the top of this file). */
static bool is_overflow(const struct coil__stack *s, const siginfo_t *si,
                        uintptr_t sp)
{
    uintptr_t map = (uintptr_t)s->mapping, base = (uintptr_t)s->base;
    uintptr_t addr = (uintptr_t)si->si_addr;
    /* si_code > 0: raised by the kernel, not sent by kill (whose siginfo
     * carries a sender, not an address). */
    if (si->si_code <= 0)
        return false;
    if (addr >= map && addr < base)
        return true; /* in the guard */
    if (!sp)
        return false;
    if (sp >= base)
        return si->si_code == SI_KERNEL && sp - base < SIGFRAME_ROOM;
    if (sp >= map)
        return true; /* the stack pointer is in the guard */
    /* A frame larger than the guard; its access beyond the guard faulted. */
    return base - sp <= COIL__STACK_REACH && addr < base &&
           addr >= (sp > SP_SLACK ? sp - SP_SLACK : 0);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    const struct coil__stack *s = coil__stack_running;
    if (s && is_overflow(s, si, interrupted_sp(uc)))
        report_overflow(s);
    pass_on(sig, si);
    errno = saved;
}

static bool is_ours(const struct sigaction *sa)
{
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_fault;
}

static void install_handler(void)
{
    struct sigaction sa, prev;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    /* Installing twice must not make us our own predecessor. */
    if (sigaction(SIGSEGV, &sa, &prev) == 0 && !is_ours(&prev))
        old_segv = prev;
    if (sigaction(SIGBUS, &sa, &prev) == 0 && !is_ours(&prev))
        old_bus = prev;
}

/* ------------------------------------------------------------------ */
/* Alternate signal stacks                                              */
/* ------------------------------------------------------------------ */

static pthread_once_t altstack_once = PTHREAD_ONCE_INIT;
static pthread_key_t altstack_key;
static bool altstack_key_ok;
static _Thread_local bool thread_ready;

static size_t altstack_size(void)
{
    size_t n = (size_t)SIGSTKSZ;
    return round_up(n > ALTSTACK_MIN ? n : ALTSTACK_MIN, page_size());
}

/* At thread exit: switch ours off (if still installed) and unmap it. */
static void free_altstack(void *mem)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem &&
        !(cur.ss_flags & SS_DISABLE)) {
        stack_t off = {.ss_flags = SS_DISABLE};
        (void)sigaltstack(&off, NULL);
    }
    (void)sys_unmap(mem, altstack_size());
}

static void make_altstack_key(void)
{
    altstack_key_ok = pthread_key_create(&altstack_key, free_altstack) == 0;
}

int coil__stack_thread_init(void)
{
    if (thread_ready)
        return 0;
    pthread_once(&altstack_once, make_altstack_key);
    if (!altstack_key_ok)
        return -ENOMEM;
    /* One already there (the program's, or a sanitizer's) is kept: its
     * owner frees it, and the report needs little room. */
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
        thread_ready = true;
        return 0;
    }
    size_t n = altstack_size();
    void *mem = sys_map(n, MAP_PRIVATE | MAP_ANONYMOUS);
    if (mem == MAP_FAILED) {
        debug("stack: no memory for an alternate signal stack: %s",
              strerror(errno));
        return -ENOMEM;
    }
    stack_t ss = {.ss_sp = mem, .ss_size = n, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0 ||
        pthread_setspecific(altstack_key, mem) != 0) {
        debug("stack: cannot install an alternate signal stack");
        free_altstack(mem);
        return -ENOMEM;
    }
    thread_ready = true;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Stacks and pools                                                     */
/* ------------------------------------------------------------------ */

static int map_stack(size_t usable, struct coil__stack **out)
{
    size_t guard = guard_size();
    size_t len = guard + usable + HEADER;
    char *m = sys_map(len, STACK_MAP_FLAGS);
    if (m == MAP_FAILED) {
        int err = errno;
        debug("stack: mmap of %zu bytes failed: %s%s", len, strerror(err),
              err == ENOMEM ? " (memory, or vm.max_map_count reached)" : "");
        return -ENOMEM;
    }
    bool cheap;
    int err = install_guard(m, guard, &cheap);
    if (err) {
        (void)sys_unmap(m, len);
        return -ENOMEM;
    }
    struct coil__stack *s = (struct coil__stack *)(m + len - HEADER);
    s->cheap_guard = cheap;
    s->base = m + guard;
    s->size = usable;
    s->mapping = m;
    s->map_size = len;
    s->owner = NULL;
    s->next_free = NULL;
    s->valgrind_id = VALGRIND_STACK_REGISTER(s->base, (char *)s->base + usable);
    *out = s;
    return 0;
}

/* Frames a context left behind keep their redzones poisoned in ASan's
 * shadow; the next user of the memory must start clean. */
static void forget_frames(struct coil__stack *s)
{
#ifdef COIL__ASAN
    __asan_unpoison_memory_region(s->base, s->size);
#else
    (void)s;
#endif
}

#ifdef COIL__ASAN
/* How much of s is poisoned while pooled, from its top. */
static size_t poison_depth(const struct coil__stack *s)
{
    return s->size < POISON_DEPTH ? s->size : POISON_DEPTH;
}
#endif

/* s goes into the pool: from now on any use of its usable range is a use
 * of a finished task's memory. */
static void pool_poison(struct coil__stack *s)
{
#ifdef COIL__ASAN
    size_t n = poison_depth(s);
    /* Below the poisoned part: the frames a context left (forget_frames). */
    __asan_unpoison_memory_region(s->base, s->size - n);
    __asan_poison_memory_region((char *)s->base + s->size - n, n);
#endif
    if (under_valgrind())
        (void)VALGRIND_MAKE_MEM_NOACCESS(s->base, s->size);
}

/* s leaves the pool for a new user: usable, its contents undefined. */
static void pool_unpoison(struct coil__stack *s)
{
#ifdef COIL__ASAN
    size_t n = poison_depth(s);
    __asan_unpoison_memory_region((char *)s->base + s->size - n, n);
#endif
    if (under_valgrind())
        (void)VALGRIND_MAKE_MEM_UNDEFINED(s->base, s->size);
}

/* False if the kernel refused (munmap can need a new VMA to split a
 * merged one, and so fail at vm.max_map_count): s is still mapped. */
static bool unmap_stack(struct coil__stack *s)
{
    void *m = s->mapping;
    size_t len = s->map_size;
    unsigned id = s->valgrind_id;
    bool cheap = s->cheap_guard;
    forget_frames(s);
    if (sys_unmap(m, len) != 0) {
        debug("stack: munmap failed: %s", strerror(errno));
        return false;
    }
    if (cheap)
        atomic_fetch_sub_explicit(&cheap_guards, 1, memory_order_relaxed);
    VALGRIND_STACK_DEREGISTER(id);
    return true;
}

void coil__stack_pool_init(struct coil__stack_pool *p, size_t size)
{
    assert(size >= COIL__STACK_MIN && size <= COIL__STACK_MAX);
    p->size = round_up(size + HEADER, page_size()) - HEADER;
    p->free = NULL;
    p->nfree = 0;
    p->max_free = POOL_KEEP;
    p->live = 0;
}

void coil__stack_pool_term(struct coil__stack_pool *p)
{
    assert(p->live == 0);
    while (p->free) {
        struct coil__stack *s = p->free;
        p->free = s->next_free;
        if (!unmap_stack(s))
            debug("stack: a pooled stack stays mapped (leaked)");
    }
    p->nfree = 0;
}

int coil__stack_get(struct coil__stack_pool *p, struct coil__stack **out)
{
    struct coil__stack *s = p->free;
    if (s) {
        p->free = s->next_free;
        p->nfree--;
        s->next_free = NULL;
        pool_unpoison(s);
    } else {
        pthread_once(&handler_once, install_handler);
        int err = map_stack(p->size, &s);
        if (err) {
            *out = NULL;
            return err;
        }
    }
    p->live++;
    *out = s;
    return 0;
}

void coil__stack_put(struct coil__stack_pool *p, struct coil__stack *s)
{
    assert(p->live > 0 && s->size == p->size);
    p->live--;
    s->owner = NULL;
    /* Kept if the pool has room, or if it could not be unmapped (kept
     * rather than lost). */
    if (p->nfree >= p->max_free && unmap_stack(s))
        return;
    pool_poison(s);
    s->next_free = p->free;
    p->free = s;
    p->nfree++;
}

/* ------------------------------------------------------------------ */
/* Measuring depth (debug mode)                                         */
/* ------------------------------------------------------------------ */

void coil__stack_clear(struct coil__stack *s)
{
    size_t page = page_size();
    uintptr_t lo = (uintptr_t)s->base;
    uintptr_t top = lo + s->size;
    uintptr_t hi = top & ~(uintptr_t)(page - 1);
    if (hi > lo)
        (void)madvise(s->base, hi - lo, MADV_DONTNEED);
    /* The top page also holds the header: cleared by hand, up to it. */
    memset((void *)hi, 0, top - hi);
}

/*
 * Reads a stack that is not running (its own frames are above what it
 * reads, and ASan and memcheck see below a fiber's stack pointer as not
 * to be read): sanitizers and memcheck are told to look away.
 */
__attribute__((no_sanitize_address)) size_t
coil__stack_used(const struct coil__stack *s)
{
    size_t page = page_size();
    const char *lo = s->base;
    const char *end = lo + s->size;
#ifdef COIL__MEMCHECK
    VALGRIND_DISABLE_ERROR_REPORTING;
#endif
    size_t used = 0;
    /* Which pages were ever touched, asked a chunk at a time: reading
     * one that was not would map it. */
    unsigned char in[256];
    size_t chunk = 0, nin = 0;
    for (const char *p = lo; p < end; p += page, chunk++) {
        if (chunk == nin) {
            size_t left = (size_t)(end - p + page - 1) / page;
            nin = left < sizeof(in) ? left : sizeof(in);
            if (mincore((void *)(uintptr_t)p, nin * page, in) != 0)
                memset(in, 1, nin); /* cannot tell: read them all */
            chunk = 0;
        }
        const char *pend = p + page < end ? p + page : end;
        if (!(in[chunk] & 1))
            continue;
        const uint64_t *w = (const uint64_t *)(const void *)p;
        const uint64_t *wend = (const uint64_t *)(const void *)pend;
        for (; w < wend && *w == 0; w++)
            ;
        if (w < wend) {
            used = (size_t)(end - (const char *)w);
            break;
        }
    }
#ifdef COIL__MEMCHECK
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
    return used;
}

/* ------------------------------------------------------------------ */
/* Test build hooks                                                     */
/* ------------------------------------------------------------------ */

#ifdef COIL_TESTING
void coil__stack_force_mprotect(bool on);
long coil__stack_set_cheap_budget(long n);
long coil__stack_cheap_guards(void);
long coil__stack_cheap_budget_default(void);
void coil__stack_reinstall_handler(void);

/* on: use mprotect guards from now on; off: decide again (madvise first). */
void coil__stack_force_mprotect(bool on)
{
    atomic_store(&guard_mode, on ? GUARD_MPROTECT : GUARD_UNKNOWN);
}

/* How many mprotect guards stacks may take while madvise ones exist (0:
 * madvise only); returns the budget it replaces. */
long coil__stack_set_cheap_budget(long n)
{
    return atomic_exchange(&cheap_budget, n);
}

/* How many live stacks have such a guard. */
long coil__stack_cheap_guards(void)
{
    return atomic_load(&cheap_guards);
}

long coil__stack_cheap_budget_default(void)
{
    return CHEAP_GUARDS;
}

/* Install the overflow handler again, over whatever replaced it (a test
 * framework installs its own around each test). */
void coil__stack_reinstall_handler(void)
{
    pthread_once(&handler_once, install_handler);
    install_handler();
}
#endif
