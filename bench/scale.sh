#!/usr/bin/env bash
# bench/scale.sh - the HTTP hello on one loop and on two, standalone.
#
#   bench/scale.sh [BUILD_DIR]    (default: build-bench at the top of the tree)
#
# wrk (-t2, 50 connections, keep-alive GETs) against coil's
# examples/http_hello on one loop, then on a loop group of two
# ("http_hello PORT 2": two loops on two threads, a listener each on the
# same port with SO_REUSEPORT), then the libuv server as one process and
# as two processes sharing the port the same way (BENCH_REUSEPORT=1).
# Then coil's two ways of sharing connections between two loops: a
# listener per loop (above), and loop 0 alone accepting and handing each
# connection in turn to the next loop ("http_hello PORT 2 handoff"),
# under that keep-alive load and under one where every request comes on
# a new connection (wrk -H "Connection: close": accepting is the work).
# Prints, from the one run:
#
#   scale_{coil,libuv}_{1,2}_rps   req/s
#   scale_{coil,libuv}_2_vs_1      x      the scaling ratio
#   scale_coil_2_handoff_rps, scale_coil_close_2{,_handoff}_rps   req/s
#   scale_coil{,_close}_handoff_vs_reuseport   x   handoff over reuseport
#
# On a two-core machine wrk shares the cores with the servers, so the
# ratio is what two loops gain under that contention, not a clean 2x.
# Environment: HTTP_SECONDS (default 2). Exits 1 if a run failed.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help

seconds=${HTTP_SECONDS:-2}
if ! command -v wrk >/dev/null; then
    say "wrk not found (Debian package wrk): the scaling benchmark is skipped"
    exit 0
fi

# wrk against $port for $seconds; prints "NAME req/s". With
# close=1 each request comes on a new connection ("Connection: close").
close=0
measure() {
    local out rps hdr=()
    [ "$close" = 1 ] && hdr=(-H "Connection: close")
    out=$(run_load wrk -t2 -c50 -d"${seconds}s" "${hdr[@]}" \
        "http://127.0.0.1:$port/") ||
        { say "$1: wrk failed"; return 1; }
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    [ -n "$rps" ] || { say "$1: no result"; return 1; }
    echo "${1}_rps $rps req/s"
}

out=$(mktemp)
second=
# shellcheck disable=SC2317 # called from the trap
stop_second() {
    if [ -n "$second" ]; then
        kill -TERM "$second" 2>/dev/null
        wait "$second" 2>/dev/null
        second=
    fi
}
trap 'stop_second; cleanup; rm -f "$out"' EXIT
status=0

coil=$(find_example http_hello)
if [ -z "$coil" ]; then
    say "http_hello not built: coil skipped"
else
    # One loop; two sharing the port (SO_REUSEPORT); two with loop 0
    # accepting and handing connections out ("handoff"). Then the last
    # two with a connection per request, where accepting is the work.
    for run in "1 1" "2 2 reuseport" "2_handoff 2 handoff" \
        "close_2 2 reuseport" "close_2_handoff 2 handoff"; do
        read -r name args <<<"$run"
        close=0
        [[ $name == close_* ]] && close=1
        # shellcheck disable=SC2086 # split into arguments on purpose
        if start_server "$coil" $args; then
            measure "scale_coil_$name" | tee -a "$out" || status=1
            stop_server
        else
            status=1
        fi
    done
    close=0
fi

uv=$build/bench/http_server_libuv
if [ ! -x "$uv" ]; then
    say "http_server_libuv not built: libuv skipped"
else
    export BENCH_REUSEPORT=1
    if start_server "$uv"; then
        measure scale_libuv_1 | tee -a "$out" || status=1
        "$uv" "$port" >&2 &
        second=$!
        sleep 0.5
        measure scale_libuv_2 | tee -a "$out" || status=1
        stop_second
        stop_server
    else
        status=1
    fi
fi

awk '{ v[$1] = $2 }
     END {
         if (v["scale_coil_1_rps"] > 0 && v["scale_coil_2_rps"] > 0)
             printf "scale_coil_2_vs_1 %.2f x\n", v["scale_coil_2_rps"] / v["scale_coil_1_rps"]
         if (v["scale_coil_2_rps"] > 0 && v["scale_coil_2_handoff_rps"] > 0)
             printf "scale_coil_handoff_vs_reuseport %.2f x\n", v["scale_coil_2_handoff_rps"] / v["scale_coil_2_rps"]
         if (v["scale_coil_close_2_rps"] > 0 && v["scale_coil_close_2_handoff_rps"] > 0)
             printf "scale_coil_close_handoff_vs_reuseport %.2f x\n", v["scale_coil_close_2_handoff_rps"] / v["scale_coil_close_2_rps"]
         if (v["scale_libuv_1_rps"] > 0 && v["scale_libuv_2_rps"] > 0)
             printf "scale_libuv_2_vs_1 %.2f x\n", v["scale_libuv_2_rps"] / v["scale_libuv_1_rps"]
     }' "$out"
exit "$status"
