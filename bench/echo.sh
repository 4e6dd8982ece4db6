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
#
# e.g. echo_epoll_1k_rps, echo_libuv_10k_p99, echo_coil_100k_p50. Only
# those lines go to stdout; diagnostics go to stderr. Exits 1 if a server
# could not be started or a load run failed (a byte echoed wrong, a
# connection dropped), after running the rest.
#
# Environment: ECHO_CONNECTIONS (default 50), ECHO_SECONDS (default 2, the
# measured time per run; each run also has a 0.2 s warm-up).
# The programs are built by the bench CMake targets (bench/run, or
# -DCOIL_BUILD_BENCH=ON); this script does not build them.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build-bench}
conns=${ECHO_CONNECTIONS:-50}
seconds=${ECHO_SECONDS:-2}
sizes=(1k:1024 10k:10240 100k:102400)

case "$build" in
-h | --help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
        "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac

say() { echo "echo.sh: $*" >&2; }

load=$build/bench/echo_load
if [ ! -x "$load" ]; then
    say "$load not found: build with -DCOIL_BUILD_BENCH=ON first"
    exit 1
fi

server_pid=

# Stop the running server, if any: SIGTERM, up to 2 s, then SIGKILL.
stop_server() {
    [ -n "$server_pid" ] || return 0
    local pid=$server_pid i status
    server_pid=
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "server $pid ignored SIGTERM for 2 s, killing it"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    status=$?
    [ "$status" -eq 0 ] || say "server exited with status $status"
    return 0
}

load_pid=
# shellcheck disable=SC2317 # called from the traps
cleanup() {
    if [ -n "$load_pid" ]; then
        kill -TERM "$load_pid" 2>/dev/null
        wait "$load_pid" 2>/dev/null
        load_pid=
    fi
    stop_server
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# True if something listens on TCP port $1 (any address, IPv4 or IPv6).
port_in_use() {
    local hex
    hex=$(printf '%04X' "$1")
    # Field 2 is local address:port, field 4 the state (0A = LISTEN).
    awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p &&
        $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A port below the kernel's ephemeral range that nothing listens on.
pick_port() {
    local lo=32768 p i
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
    [ "$lo" -gt 11000 ] || lo=32768
    for ((i = 0; i < 100; i++)); do
        p=$((10000 + RANDOM % (lo - 10000)))
        port_in_use "$p" || { echo "$p"; return 0; }
    done
    return 1
}

# Start server program $1 on a free port; sets server_pid and port.
# Tries a few ports in case another process takes one meanwhile.
start_server() {
    local exe=$1 try i
    for ((try = 0; try < 5; try++)); do
        port=$(pick_port) || { say "no free port found"; return 1; }
        "$exe" "$port" >&2 &
        server_pid=$!
        for ((i = 0; i < 50; i++)); do
            if ! kill -0 "$server_pid" 2>/dev/null; then
                wait "$server_pid" 2>/dev/null
                server_pid=
                break
            fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                return 0
            fi
            sleep 0.1
        done
        if [ -n "$server_pid" ]; then
            say "$exe does not accept on port $port after 5 s"
            stop_server
            return 1
        fi
        say "$exe exited at start (port $port), trying another port"
    done
    return 1
}

servers=(epoll:"$build/bench/echo_server_epoll")
servers+=(libuv:"$build/bench/echo_server_libuv")
coil_exe=
for cand in "$build/examples/echo_server" "$build/bench/echo_server"; do
    if [ -x "$cand" ]; then
        coil_exe=$cand
        break
    fi
done
servers+=(coil:"$coil_exe")

status=0
for entry in "${servers[@]}"; do
    label=${entry%%:*}
    exe=${entry#*:}
    if [ -z "$exe" ] || [ ! -x "$exe" ]; then
        case $label in
        epoll)
            say "echo_server_epoll not built"
            status=1
            ;;
        libuv) say "libuv server skipped (not built: libuv not found, or COIL_BENCH_COMPARE=OFF)" ;;
        coil) say "coil server skipped (no examples/echo_server in $build)" ;;
        esac
        continue
    fi
    if ! start_server "$exe"; then
        say "$label: server did not start"
        status=1
        continue
    fi
    say "$label: $exe on 127.0.0.1:$port"
    for s in "${sizes[@]}"; do
        name=echo_${label}_${s%%:*}
        # In the background, so a signal to this script is handled at
        # once (bash runs traps only between foreground commands).
        "$load" 127.0.0.1 "$port" "$conns" "${s#*:}" "$seconds" "$name" &
        load_pid=$!
        wait "$load_pid"
        rc=$?
        load_pid=
        if [ "$rc" -ne 0 ]; then
            say "$name: load run failed (status $rc)"
            status=1
        fi
    done
    stop_server
done
exit "$status"
