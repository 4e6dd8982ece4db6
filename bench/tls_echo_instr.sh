#!/usr/bin/env bash
# bench/tls_echo_instr.sh - user-space instructions per request of the
# TLS echo servers, counted by valgrind's callgrind: steadier than time
# on a shared machine, and there when the machine has no hardware
# counters for perf stat (a VM).
#
#   bench/tls_echo_instr.sh [BUILD_DIR]   (default: build-bench)
#
# For tls_echo_server_epoll and coil's tls_echo_server, at 1 KiB and
# 100 KiB: the server runs under callgrind with a throwaway EC P-256
# certificate (a cheap handshake), echo_load --tls drives 10 connections
# for 5 s, and the instructions counted in the server (handshakes and
# start-up included: under 1% here) are divided by the round trips made
# (rps times the 5 s and echo_load's 0.2 s warm-up). Prints
#
#   tls_echo_{epoll,coil}_{1k,100k}_instr   instr/req
#   tls_echo_coil_vs_epoll_{1k,100k}_instr  x
#
# Takes about a minute. Needs valgrind and openssl.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help

load=$build/bench/echo_load
epoll=$build/bench/tls_echo_server_epoll
coil=$(find_example tls_echo_server)
for need in valgrind callgrind_control openssl; do
    command -v "$need" >/dev/null || { say "$need not found"; exit 1; }
done
if [ ! -x "$load" ] || [ ! -x "$epoll" ] || [ -z "$coil" ]; then
    say "the TLS echo programs are not built in $build (bench/run tls builds them)"
    exit 1
fi
make_scratch || exit 1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=localhost -days 1 -keyout "$scratch/key.pem" \
    -out "$scratch/cert.pem" 2>/dev/null || { say "openssl req failed"; exit 1; }

seconds=5

# Instructions per request of server $1 at message size $2, printed.
count() {
    local exe=$1 size=$2 out rps ir i
    port=$(pick_port) || return 1
    valgrind --tool=callgrind --callgrind-out-file="$scratch/cg.%p" \
        "$exe" "$port" "$scratch/cert.pem" "$scratch/key.pem" >/dev/null 2>&1 &
    server_pid=$!
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
    out=$("$load" --tls 127.0.0.1 "$port" 10 "$size" "$seconds" x 2>/dev/null)
    callgrind_control -d "$server_pid" >/dev/null 2>&1
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=
    rps=$(awk '$1 == "x_rps" { print $2 }' <<<"$out")
    ir=$(cat "$scratch"/cg.* 2>/dev/null | awk '/^(summary|totals):/ { s += $2 } END { print s + 0 }')
    rm -f "$scratch"/cg.*
    if [ -z "$rps" ] || [ "$ir" = 0 ]; then
        say "${exe##*/} $size: no count"
        return 1
    fi
    awk -v ir="$ir" -v r="$rps" -v s="$seconds" 'BEGIN { printf "%.0f\n", ir / (r * (s + 0.2)) }'
}

status=0
for s in 1k:1024 100k:102400; do
    e=$(count "$epoll" "${s#*:}") || status=1
    c=$(count "$coil" "${s#*:}") || status=1
    [ -n "$e" ] && echo "tls_echo_epoll_${s%%:*}_instr $e instr/req"
    [ -n "$c" ] && echo "tls_echo_coil_${s%%:*}_instr $c instr/req"
    [ -n "$e" ] && [ -n "$c" ] &&
        awk -v c="$c" -v e="$e" -v n="${s%%:*}" \
            'BEGIN { printf "tls_echo_coil_vs_epoll_%s_instr %.2f x\n", n, c / e }'
done
exit "$status"
