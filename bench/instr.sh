#!/usr/bin/env bash
# bench/instr.sh - user-space instructions per operation of the micro
# benchmarks, counted by valgrind's callgrind: steadier than time on a
# shared machine, and there when the machine has no hardware counters
# for perf stat (a VM).
#
#   bench/instr.sh [BUILD_DIR]   (default: build-bench)
#
# For call_soon_chain, call_soon_batch and timers (with their libuv_ and
# libev_ versions where built), task_switch, sleep_many and boost_switch
# (where built). The script builds the target bench_instr in BUILD_DIR
# (configuring it as bench/run does when it has not been): each program
# twice, at two counts no bigger than its usual one, compiled so that
# callgrind counts only the interval the program times
# (bench/CMakeLists.txt lists the counts; bench.h). Each copy runs under
# callgrind; the difference of the two counts of instructions over the
# difference of the operations is the line, so every fixed cost
# (start-up, the first pool chunk, the first poll) drops out. Prints
#
#   NAME_instr                          instr/op
#   {call_soon_chain,call_soon_batch,timers}_vs_{libev,libuv}_instr  x
#   task_switch_vs_boost_context_instr  x
#
# where NAME is the benchmark's line (boost_switch's is
# boost_context_switch) and the ratios are coil's count over the peer's
# (above 1: coil runs more instructions). An operation is what the
# benchmark's ns/op is per (one sleep for sleep_many). Takes a little
# over a minute, most of it the three timer programs. Needs valgrind.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for need in valgrind cmake; do
    command -v "$need" >/dev/null || { say "$need not found"; exit 1; }
done

# Configure like bench/run when BUILD_DIR has no build yet (bench/run
# also installs the peers' libraries; this only uses what is there).
if [ ! -f "$build/CMakeCache.txt" ]; then
    say "configuring $build (Release, as bench/run does)"
    gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    mkdir -p "$build"
    cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DCOIL_BUILD_TESTS=OFF -DCOIL_BUILD_EXAMPLES=OFF \
        -DCOIL_BUILD_BENCH=ON >"$build/instr-build.log" 2>&1 || {
        cat "$build/instr-build.log" >&2
        say "configure failed"
        exit 1
    }
fi
log=$build/instr-build.log
say "building the instruction-count programs in $build (log: $log)"
if ! cmake --build "$build" --target bench_instr >>"$log" 2>&1; then
    cat "$log" >&2
    say "build failed"
    exit 1
fi
list=$build/bench/instr.list
if [ ! -f "$list" ] || ! grep -q '^[a-z]' "$list"; then
    say "no programs in $list (valgrind/callgrind.h missing at configure time?)"
    exit 1
fi
make_scratch || exit 1

# Instructions counted in one run of program $1 (callgrind's summary),
# printed; fails if the program does.
count() {
    local exe=$1 out=$scratch/cg.out
    rm -f "$out"
    if ! valgrind --tool=callgrind --collect-atstart=no \
        --callgrind-out-file="$out" --log-file="$scratch/vg.log" \
        "$exe" >"$scratch/stdout" 2>"$scratch/stderr"; then
        cat "$scratch/stderr" "$scratch/vg.log" >&2
        say "${exe##*/} failed under callgrind"
        return 1
    fi
    awk '/^summary:/ { s = $2 } /^totals:/ && s == "" { s = $2 }
         END { if (s == "") exit 1; print s }' "$out"
}

# The benchmarks in the order printed, each with the name of its line.
names=(call_soon_chain libuv_call_soon_chain libev_call_soon_chain
    call_soon_batch libuv_call_soon_batch libev_call_soon_batch
    timers libuv_timers libev_timers task_switch sleep_many boost_switch)
declare -A line=([boost_switch]=boost_context_switch)
declare -A per # instructions per operation, by benchmark

status=0
for name in "${names[@]}"; do
    # name ops_a exe_a ops_b exe_b, as bench/CMakeLists.txt wrote it.
    ops_a='' exe_a='' ops_b='' exe_b=''
    read -r _ ops_a exe_a ops_b exe_b < <(awk -v n="$name" '$1 == n' "$list")
    if [ -z "$exe_b" ]; then
        say "$name: not built here, skipped"
        continue
    fi
    if ! ir_a=$(count "$build/bench/$exe_a") ||
        ! ir_b=$(count "$build/bench/$exe_b"); then
        status=1
        continue
    fi
    per[$name]=$(awk -v a="$ir_a" -v b="$ir_b" -v x="$ops_a" -v y="$ops_b" \
        'BEGIN { printf "%.1f", (b - a) / (y - x) }')
    say "$name: $ir_a instructions for $ops_a operations, $ir_b for $ops_b"
    echo "${line[$name]:-$name}_instr ${per[$name]} instr/op"
done

# "NAME X": the ratio of benchmark $2's count to $3's, if both ran.
ratio() {
    [ -n "${per[$2]:-}" ] && [ -n "${per[$3]:-}" ] || return 0
    awk -v n="$1" -v a="${per[$2]}" -v b="${per[$3]}" \
        'BEGIN { if (b > 0) printf "%s %.2f x\n", n, a / b }'
}
for b in call_soon_chain call_soon_batch timers; do
    for peer in libev libuv; do
        ratio "${b}_vs_${peer}_instr" "$b" "${peer}_$b"
    done
done
ratio task_switch_vs_boost_context_instr task_switch boost_switch
exit "$status"
