#!/usr/bin/env bash
# bench/http.sh - the HTTP "Hello, World!" benchmark, standalone.
#
#   bench/http.sh [BUILD_DIR]     (default: build-bench at the top of the tree)
#
# For each HTTP server built in BUILD_DIR - http_server_epoll (the
# reference), http_server_libuv (when libuv was found) and coil's
# http_hello (BUILD_DIR/examples or BUILD_DIR/bench, when built) - start
# it on a free port of 127.0.0.1, check that it answers two pipelined
# requests with exactly the expected bytes, load it with wrk (keep-alive
# GET requests of /), then stop it. Each run prints
#
#   http_SERVER_rps  req/s    requests per second (wrk's Requests/sec)
#   http_SERVER_p99  us       99th percentile latency (wrk --latency)
#   http_SERVER_cpu  ns/req   the server's CPU time (user + system) during
#                             the wrk run, per request wrk completed
#
# e.g. http_epoll_rps, http_coil_cpu. Only those lines go to stdout;
# diagnostics go to stderr. Exits 1 if a server could not be started,
# answered the check wrongly, or wrk failed or reported socket errors
# (connect, read, write, timeout) or non-2xx/3xx responses, after running
# the rest; exits 0 with a note on stderr if wrk is not installed.
#
# Environment: HTTP_CONNECTIONS (default 50), HTTP_SECONDS (default 2),
# HTTP_THREADS (wrk's threads, default 1); BENCH_PIN=N runs the servers
# and wrk on CPU N only (steadier _cpu lines, see bench/README.md).
# The programs are built by the bench CMake targets (bench/run, or
# -DCOIL_BUILD_BENCH=ON); this script does not build them.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help

conns=${HTTP_CONNECTIONS:-50}
seconds=${HTTP_SECONDS:-2}
threads=${HTTP_THREADS:-1}

if ! command -v wrk >/dev/null; then
    say "wrk not found (Debian package wrk): the HTTP benchmark is skipped"
    exit 0
fi

# What every server must send for a keep-alive GET: examples/http_hello's
# answer (bench/http_request.h has the same bytes for the C servers).
expected=$'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, World!'

# Send two requests in one write to the server on $port and check that
# exactly two expected answers come back.
check_answers() {
    local req=$'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' got
    if ! exec 3<>"/dev/tcp/127.0.0.1/$port"; then
        say "cannot connect to check the answers"
        return 1
    fi
    printf '%s%s' "$req" "$req" >&3
    IFS= read -r -d '' -N $((2 * ${#expected})) -t 5 got <&3
    exec 3<&-
    if [ "$got" != "$expected$expected" ]; then
        say "wrong answer to two pipelined GETs:"
        printf '%q\n' "$got" >&2
        return 1
    fi
}

# Turn wrk's output ($1) into the result lines for server $2, and the
# server's CPU ticks during the run ($3) into ns/req. Fails on errors.
report() {
    local out=$1 label=$2 ticks=$3 requests
    if grep -q -e '^ *Socket errors:' -e '^ *Non-2xx or 3xx responses:' \
        <<<"$out"; then
        say "http_$label: wrk reported errors:"
        grep -e '^ *Socket errors:' -e '^ *Non-2xx or 3xx responses:' \
            <<<"$out" >&2
        return 1
    fi
    # "  123456 requests in 2.00s, 12.34MB read"
    requests=$(awk '$2 == "requests" && $3 == "in" { print $1 }' <<<"$out")
    # "Requests/sec: 61728.00", and the 99% line of --latency's
    # distribution, "     99%  412.00us" (us, ms, s, m or h).
    if ! awk -v name="http_$label" '
        BEGIN { us["us"] = 1; us["ms"] = 1e3; us["s"] = 1e6
                us["m"] = 6e7; us["h"] = 3.6e9 }
        $1 == "Requests/sec:" { rps = $2 }
        $1 == "99%" {
            u = $2; sub(/^[0-9.]+/, "", u)
            if (u in us) p99 = ($2 + 0) * us[u]
        }
        END {
            if (rps == "" || p99 == "") exit 1
            printf "%s_rps %.1f req/s\n%s_p99 %.1f us\n", name, rps, name, p99
        }' <<<"$out"; then
        say "http_$label: cannot read wrk's output:"
        printf '%s\n' "$out" >&2
        return 1
    fi
    if [ -z "$requests" ] || [ "$requests" -eq 0 ]; then
        say "http_$label: wrk completed no request"
        return 1
    fi
    print_cpu_per_request "http_${label}_cpu" "$ticks" "$requests"
}

# One server: check it, then one wrk run with its CPU time read just
# before and after (wrk has no warm-up: every request it counts falls in
# that window, and the server does nothing else meanwhile). wrk's whole
# output stays in BUILD_DIR/bench/http_SERVER.wrk.
bench_http() {
    local label=$1 out=$build/bench/http_$1.wrk before after rc
    check_answers || return 1
    before=$(proc_cpu_ticks "$server_pid") || return 1
    run_load wrk "-t$threads" "-c$conns" "-d${seconds}s" --latency \
        "http://127.0.0.1:$port/" >"$out"
    rc=$?
    after=$(proc_cpu_ticks "$server_pid")
    if [ "$rc" -ne 0 ] || [ -z "$after" ]; then
        say "http_$label: wrk failed (status $rc)"
        cat "$out" >&2
        return 1
    fi
    report "$(cat "$out")" "$label" $((after - before))
}

server_entries http http_hello
run_servers bench_http
