#!/usr/bin/env bash
# bench/idle.sh - memory per idle connection (the "C10M question"),
# standalone.
#
#   bench/idle.sh [BUILD_DIR]     (default: build-bench at the top of the tree)
#
# For each echo server built in BUILD_DIR - echo_server_epoll (the
# reference), echo_server_libuv (when libuv was found) and coil's
# echo_server (BUILD_DIR/examples or BUILD_DIR/bench, when built) - start
# it on a free port of 127.0.0.1 and read its resident set (VmRSS in
# /proc/PID/status). idle_load then opens IDLE_CONNECTIONS connections,
# each echoing one 64-byte message, and keeps them open and idle; after
# IDLE_SETTLE seconds the server's resident set is read again, the
# connections are closed and the server is stopped. Each server prints
#
#   idle_SERVER_rss_per_conn  bytes   (VmRSS after - before) / connections
#
# (SERVER epoll, libuv or coil), and when both servers ran
#
#   idle_coil_vs_epoll_rss    x       coil's rss_per_conn over epoll's
#   idle_coil_vs_libuv_rss    x       coil's rss_per_conn over libuv's
#
# Only those lines go to stdout; diagnostics go to stderr, among them
# each server's VmRSS, Pss (smaps_rollup) and open files before and
# after. Exits 1 if a server could not be started, a connection failed,
# an echo was wrong, or the server dropped connections while they idled
# or holds fewer new descriptors than connections (its line is then not
# printed), after running the rest.
#
# Environment: IDLE_CONNECTIONS (default 10000), IDLE_BATCH (connections
# opened at a time, default 50, below coil's listen backlog of 100),
# IDLE_SETTLE (seconds between the last echo and the second reading,
# default 0.5); BENCH_PIN=N runs the servers and idle_load on CPU N only.
# The servers inherit this script's limit on open files: its soft limit is
# raised (up to the hard limit) when the connections would not fit.
# The programs are built by the bench CMake targets (bench/run, or
# -DCOIL_BUILD_BENCH=ON); this script does not build them.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help

# Field $2 of /proc/PID/$3 ("Name:   N kB"), for process $1, in kB.
# shellcheck disable=SC2317 # these three are called from bench_idle
proc_kb() {
    awk -v f="$2:" '$1 == f { print $2; found = 1; exit }
        END { exit !found }' "/proc/$1/$3" 2>/dev/null
}

# The server's memory and open files: "RSS PSS FDS" (kB, kB, count; PSS
# is "-" without smaps_rollup, before Linux 4.14).
# shellcheck disable=SC2317
server_state() {
    local rss pss fds
    rss=$(proc_kb "$server_pid" VmRSS status) || return 1
    pss=$(proc_kb "$server_pid" Pss smaps_rollup) || pss=-
    fds=("/proc/$server_pid/fd/"*)
    echo "$rss $pss ${#fds[@]}"
}

# Print "NAME VALUE bytes": kB from $2 to $3 over the connections.
# shellcheck disable=SC2317
print_per_conn() {
    awk -v name="$1" -v a="$2" -v b="$3" -v n="$conns" \
        'BEGIN { printf "%s %.1f bytes\n", name, (b - a) * 1024 / n }'
}

conns=${IDLE_CONNECTIONS:-10000}
batch=${IDLE_BATCH:-50}
settle=${IDLE_SETTLE:-0.5}

if ! [[ $conns =~ ^[1-9][0-9]{0,6}$ ]]; then
    say "IDLE_CONNECTIONS=$conns: want a positive whole number"
    exit 1
fi
if ! [[ $batch =~ ^[1-9][0-9]{0,2}$ ]]; then
    say "IDLE_BATCH=$batch: want a whole number 1..999"
    exit 1
fi
if ! [[ $settle =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    say "IDLE_SETTLE=$settle: want seconds, e.g. 0.5"
    exit 1
fi

load=$build/bench/idle_load
if [ ! -x "$load" ]; then
    say "$load not found: build with -DCOIL_BUILD_BENCH=ON first"
    exit 1
fi

# Open files: a server needs one per connection plus a few of its own
# (idle_load raises its own soft limit). Raise the soft limit that the
# servers inherit to the hard limit if the connections do not fit.
need=$((conns + 64))
soft=$(ulimit -Sn)
hard=$(ulimit -Hn)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$need" ]; then
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
        say "$conns connections need $need open files per process; the" \
            "hard limit is $hard: set IDLE_CONNECTIONS lower"
        exit 1
    fi
    target=$hard
    [ "$hard" = unlimited ] && target=$need
    if ! ulimit -Sn "$target"; then
        say "cannot raise the open file limit from $soft to $target"
        exit 1
    fi
    say "open file limit raised from $soft to $target for the servers"
fi

make_scratch || exit 1
results=$scratch/results
ctl=$scratch/ctl # idle_load's stdin: closed to end it
out=$scratch/out # idle_load's stdout: its "ready" line

# One server: memory before, idle_load's connections up and idle, memory
# after, idle_load told to end (its stdin closed) and waited for.
# shellcheck disable=SC2317 # called through run_servers
bench_idle() {
    local label=$1 line='' rc ctl_fd out_fd waited=0 status=0 state
    local rss_0 pss_0 fds_0 rss_1 pss_1 fds_1
    state=$(server_state) || { say "$label: cannot read /proc/$server_pid"; return 1; }
    read -r rss_0 pss_0 fds_0 <<<"$state"

    # Two FIFOs, opened read-write here so that no open blocks (the only
    # writer of ctl is this script: closing it is idle_load's end of
    # file). idle_load must not inherit this script's ends.
    rm -f "$ctl" "$out"
    mkfifo "$ctl" "$out" || { say "mkfifo failed"; return 1; }
    exec {ctl_fd}<>"$ctl" {out_fd}<>"$out"
    "${pin[@]}" "$load" 127.0.0.1 "$port" "$conns" "$batch" \
        <"$ctl" >"$out" {ctl_fd}>&- {out_fd}>&- &
    load_pid=$!

    # Its "ready N" line, or its exit, or 300 s (idle_load's own guard).
    while ! read -r -t 1 line <&"$out_fd"; do
        waited=$((waited + 1))
        if ! kill -0 "$load_pid" 2>/dev/null || [ "$waited" -ge 300 ]; then
            break
        fi
    done
    if [ "$line" = "ready $conns" ]; then
        sleep "$settle"
        if state=$(server_state); then
            read -r rss_1 pss_1 fds_1 <<<"$state"
        else
            say "$label: cannot read /proc/$server_pid"
            status=1
        fi
    else
        say "$label: idle_load did not get ready${line:+ (said: $line)}"
        status=1
    fi

    # End idle_load: end of file on its stdin (SIGTERM if it hangs).
    exec {ctl_fd}>&-
    for ((waited = 0; waited < 100; waited++)); do
        kill -0 "$load_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$load_pid" 2>/dev/null
    wait "$load_pid"
    rc=$?
    load_pid=
    exec {out_fd}<&-
    if [ "$rc" -ne 0 ]; then
        say "$label: idle_load failed (status $rc)"
        status=1
    fi
    [ "$status" -eq 0 ] || return 1

    if [ $((fds_1 - fds_0)) -lt "$conns" ]; then
        say "$label: the server holds $((fds_1 - fds_0)) more open files," \
            "fewer than the $conns connections"
        return 1
    fi
    say "$label: VmRSS $rss_0 -> $rss_1 kB, Pss $pss_0 -> $pss_1 kB," \
        "open files $fds_0 -> $fds_1"
    print_per_conn "idle_${label}_rss_per_conn" "$rss_0" "$rss_1" |
        tee -a "$results"
}

server_entries echo echo_server
status=0
run_servers bench_idle || status=1

# coil over the others, from this run's lines.
if [ -s "$results" ]; then
    awk '{ v[$1] = $2 }
        END {
            if (!("idle_coil_rss_per_conn" in v))
                exit
            c = v["idle_coil_rss_per_conn"]
            split("epoll libuv", o, " ")
            for (i = 1; i <= 2; i++) {
                k = "idle_" o[i] "_rss_per_conn"
                if ((k in v) && v[k] > 0)
                    printf "idle_coil_vs_%s_rss %.2f x\n", o[i], c / v[k]
            }
        }' "$results"
fi
exit "$status"
