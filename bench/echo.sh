#!/usr/bin/env bash
# bench/echo.sh - the echo server benchmark, standalone.
#
#   bench/echo.sh [BUILD_DIR]     (default: build-bench at the top of the tree)
#
# For each echo server built in BUILD_DIR - echo_server_epoll (the
# reference), echo_server_libuv (when libuv was found) and coil's
# echo_server (BUILD_DIR/examples or BUILD_DIR/bench, when built) - start
# it on a free port of 127.0.0.1, run echo_load against it with messages
# of 1 KiB, 10 KiB and 100 KiB, then stop it. Each run prints
#
#   echo_SERVER_SIZE_rps  req/s    round trips per second, all connections
#   echo_SERVER_SIZE_p50  us       median round-trip latency
#   echo_SERVER_SIZE_p99  us       99th percentile round-trip latency
#   echo_SERVER_SIZE_cpu  ns/req   the server's CPU time (user + system)
#                                  per round trip, over the measured time
#
# e.g. echo_epoll_1k_rps, echo_libuv_10k_p99, echo_coil_100k_cpu. Only
# those lines go to stdout; diagnostics go to stderr. Exits 1 if a server
# could not be started or a load run failed (a byte echoed wrong, a
# connection dropped), after running the rest.
#
# Environment: ECHO_CONNECTIONS (default 50), ECHO_SECONDS (default 2, the
# measured time per run; each run also has a 0.2 s warm-up); BENCH_PIN=N
# runs the servers and echo_load on CPU N only (steadier _cpu lines, see
# bench/README.md).
# The programs are built by the bench CMake targets (bench/run, or
# -DCOIL_BUILD_BENCH=ON); this script does not build them.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help

conns=${ECHO_CONNECTIONS:-50}
seconds=${ECHO_SECONDS:-2}
sizes=(1k:1024 10k:10240 100k:102400)

load=$build/bench/echo_load
if [ ! -x "$load" ]; then
    say "$load not found: build with -DCOIL_BUILD_BENCH=ON first"
    exit 1
fi

# One server, every message size. echo_load reads the server's CPU time
# itself, at the start and the end of its measured interval (given the
# server's pid), so the 0.2 s warm-up is not counted.
bench_echo() {
    local label=$1 s name status=0
    for s in "${sizes[@]}"; do
        name=echo_${label}_${s%%:*}
        if ! run_load "$load" 127.0.0.1 "$port" "$conns" "${s#*:}" \
            "$seconds" "$name" "$server_pid"; then
            say "$name: load run failed"
            status=1
        fi
    done
    return "$status"
}

server_entries echo echo_server
run_servers bench_echo
