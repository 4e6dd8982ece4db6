#!/usr/bin/env bash
# bench/tls_echo.sh - the TLS echo benchmark, standalone.
#
#   bench/tls_echo.sh [BUILD_DIR]  (default: build-bench at the top of the tree)
#
# coil's TLS echo server (examples/tls_echo_server.c, in BUILD_DIR/examples
# or BUILD_DIR/bench) against tls_echo_server_epoll, the same echo written
# on a plain epoll loop with OpenSSL (the reference), under the same load:
# echo_load --tls, keep-alive connections each making one round trip
# after another, messages of 1 KiB and 100 KiB. Both servers present a
# throwaway self-signed certificate made here (openssl req) in a
# temporary directory that is removed on exit. Each run prints
#
#   tls_echo_SERVER_SIZE_rps  req/s    round trips per second, all connections
#   tls_echo_SERVER_SIZE_p50  us       median round-trip latency
#   tls_echo_SERVER_SIZE_p99  us       99th percentile round-trip latency
#   tls_echo_SERVER_SIZE_cpu  ns/req   the server's CPU time (user + system)
#                                      per round trip, over the measured time
#
# (SERVER epoll or coil, SIZE 1k or 100k), and for each size both servers
# ran at
#
#   tls_echo_coil_vs_epoll_SIZE_cpu  x  coil's cpu over the reference's
#                                       (above 1: coil costs more)
#   tls_echo_coil_vs_epoll_SIZE_rps  x  coil's rps over the reference's
#                                       (below 1: coil is slower)
#
# Only those lines go to stdout; diagnostics go to stderr. Exits 1 if a
# server could not be started or a load run failed (a byte echoed wrong, a
# connection dropped, a handshake failed), after running the rest; exits 0
# with a note on stderr when the build has no TLS (OpenSSL was not found
# when it was configured) or the openssl command is missing.
#
# Environment: TLS_ECHO_CONNECTIONS (default 50), TLS_ECHO_SECONDS
# (default 2, the measured time per run; each run also has a 0.2 s
# warm-up, after the handshakes); BENCH_PIN=N runs the servers and
# echo_load on CPU N only (steadier _cpu lines, see bench/README.md).
# The programs are built by the bench CMake targets (bench/run, or
# -DCOIL_BUILD_BENCH=ON); this script does not build them.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help

conns=${TLS_ECHO_CONNECTIONS:-50}
seconds=${TLS_ECHO_SECONDS:-2}
sizes=(1k:1024 100k:102400)

load=$build/bench/echo_load
reference=$build/bench/tls_echo_server_epoll
if [ ! -x "$load" ]; then
    say "$load not found: build with -DCOIL_BUILD_BENCH=ON first"
    exit 1
fi
# The reference and echo_load's --tls are built together, when CMake
# finds OpenSSL.
if [ ! -x "$reference" ]; then
    say "$reference not built (OpenSSL not found at configure time):" \
        "the TLS echo benchmark is skipped"
    exit 0
fi
if ! command -v openssl >/dev/null; then
    say "the openssl command is missing (Debian package openssl):" \
        "the TLS echo benchmark is skipped"
    exit 0
fi

make_scratch || exit 1
cert=$scratch/cert.pem
key=$scratch/key.pem
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
    -keyout "$key" -out "$cert" >"$scratch/openssl.log" 2>&1 || {
    cat "$scratch/openssl.log" >&2
    say "cannot make a self-signed certificate"
    exit 1
}
server_args=("$cert" "$key")
results=$scratch/results

# One server, every message size; its lines are kept for the ratios.
# echo_load reads the server's CPU time itself, at the start and the end
# of its measured interval, so neither the handshakes nor the warm-up
# count.
# shellcheck disable=SC2317 # called through run_servers
bench_tls_echo() {
    local label=$1 s name status=0
    for s in "${sizes[@]}"; do
        name=tls_echo_${label}_${s%%:*}
        if run_load "$load" --tls 127.0.0.1 "$port" "$conns" "${s#*:}" \
            "$seconds" "$name" "$server_pid" >"$scratch/out"; then
            cat "$scratch/out"
            cat "$scratch/out" >>"$results"
        else
            say "$name: load run failed"
            status=1
        fi
    done
    return "$status"
}

servers=("epoll:$reference" "coil:$(find_example tls_echo_server)")
status=0
run_servers bench_tls_echo || status=1

# coil over the reference, per size and measure, from this run's lines.
if [ -s "$results" ]; then
    awk -v sizes="${sizes[*]%%:*}" '
        { v[$1] = $2 }
        END {
            ns = split(sizes, s, " ")
            split("cpu rps", m, " ")
            for (i = 1; i <= ns; i++)
                for (k = 1; k <= 2; k++) {
                    c = v["tls_echo_coil_" s[i] "_" m[k]]
                    e = v["tls_echo_epoll_" s[i] "_" m[k]]
                    if (c > 0 && e > 0)
                        printf "tls_echo_coil_vs_epoll_%s_%s %.2f x\n",
                            s[i], m[k], c / e
                }
        }' "$results"
fi
exit "$status"
