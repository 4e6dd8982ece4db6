// SPDX-License-Identifier: MIT
//
// boost_switch - a raw Boost.Context switch, the reference that
// task_switch's hand-off is held against (goal: a coil hand-off at most
// 3x this, timed on the same machine in the same run; bench/run prints
// the ratio as task_switch_vs_boost_context).
//
// Two contexts, the main one and one made on its own stack, switch back
// and forth ROUNDS times; each round trip is two switches. One run is
// timed, REPS runs are made and the best is printed, per switch:
//
//   boost_context_switch <wall ns per switch> ns/op
//
// The unit. task_switch prints ns per hand-off, and a hand-off is one
// transfer of control from one task to the other: task A completes B's
// future and awaits its own, and B runs. Here one switch is one
// transfer of control from one context to the other: one
// jump_fcontext. So a round trip counts two, in both programs, and the
// ratio compares the cost of handing the CPU from one stack to another
// once. What coil does inside a hand-off (a future made, completed and
// awaited, the loop's bookkeeping, and one switch when the tasks hand
// over directly or two through the loop's context) is exactly what the
// ratio is meant to weigh.
//
// Which API. boost::context::detail::jump_fcontext / make_fcontext, the
// assembly switch under everything else in Boost.Context (fiber,
// callcc, and Boost.Coroutine2 and Boost.Fiber above them): on x86-64
// it saves what the ABI makes the callee preserve (rbx, rbp, r12-r15,
// MXCSR, the x87 control word) on the running stack, swaps stack
// pointers and restores, the same work as coil's own asm switch.
// boost::context::fiber adds a record per fiber, move-only ownership of
// the suspended context (std::exchange on every resume) and unwinding
// on destruction; worth having in a program, but not the raw cost of a
// switch, and the goal is stated against the raw switch. The library is
// linked statically where CMake finds libboost_context.a, so the call is
// a direct one (no PLT), as coil's switch is in the benchmarks.
//
// The made context is never finished: it is abandoned in its loop after
// the last round and its stack freed, which is fine for a context that
// owns nothing (jump_fcontext unwinds nothing).
//
// Built by bench/CMakeLists.txt when a C++ compiler and Boost.Context
// are found. With -DBENCH_INSTR (bench/instr.sh's copies) callgrind
// counts only the timed loop, as in the C benchmarks' bench.h.
#include <boost/context/detail/fcontext.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <unistd.h>

#ifdef BENCH_INSTR
#include <valgrind/callgrind.h>
#define BENCH_INSTR_TOGGLE() CALLGRIND_TOGGLE_COLLECT
#else
#define BENCH_INSTR_TOGGLE() ((void)0)
#endif

#ifndef ROUNDS
#define ROUNDS 10000000L
#endif
#ifndef REPS
#define REPS 3
#endif

namespace ctx = boost::context::detail;

namespace {

constexpr std::size_t stack_size = 64 * 1024;

long seen; // rounds the made context has run

long long wall_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

[[noreturn]] void fail(const char *what)
{
    std::fprintf(stderr, "bench: %s\n", what);
    std::exit(1);
}

extern "C" void on_alarm(int)
{
    static const char msg[] = "bench: timed out, giving up\n";
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    static_cast<void>(r);
    _exit(2);
}

// The made context: count, then hand control back to whoever switched
// here (t.fctx is that context, saved by the switch that arrived).
void entry(ctx::transfer_t t)
{
    for (;;) {
        seen++;
        t = ctx::jump_fcontext(t.fctx, nullptr);
    }
}

// One run: ns per switch.
double run_once(long rounds)
{
    void *stack = std::malloc(stack_size);
    if (!stack)
        fail("no memory for a stack");
    seen = 0;
    // make_fcontext takes the top of the stack (it grows down) and lays
    // the context out below it.
    ctx::fcontext_t co =
        ctx::make_fcontext(static_cast<char *>(stack) + stack_size, stack_size,
                           entry);
    // Enter it once (it counts and comes back), outside the timing.
    ctx::transfer_t t = ctx::jump_fcontext(co, nullptr);

    long long t0 = wall_ns();
    BENCH_INSTR_TOGGLE();
    for (long i = 0; i < rounds; i++)
        t = ctx::jump_fcontext(t.fctx, nullptr);
    BENCH_INSTR_TOGGLE();
    long long t1 = wall_ns();

    if (seen != rounds + 1) {
        std::fprintf(stderr, "bench: the context ran %ld times, not %ld\n",
                     seen, rounds + 1);
        std::exit(1);
    }
    std::free(stack); // the context is abandoned mid-loop, never resumed
    return static_cast<double>(t1 - t0) / (2.0 * static_cast<double>(rounds));
}

} // namespace

int main()
{
    std::signal(SIGALRM, on_alarm);
    alarm(60);
    double best = 0;
    for (int r = 0; r < REPS; r++) {
        double ns = run_once(ROUNDS);
        if (r == 0 || ns < best)
            best = ns;
    }
    std::printf("boost_context_switch %.1f ns/op\n", best);
    return 0;
}
