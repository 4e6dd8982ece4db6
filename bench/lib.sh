# shellcheck shell=bash
# bench/lib.sh - what the server benchmarks (echo.sh, http.sh,
# tls_echo.sh) share: their command line, picking a free port, starting
# and stopping a server, running the load program so that signals still
# reach the script, a scratch directory removed on exit, and reading a
# server's CPU time. Sourced, not run, with the script's arguments still
# in place: "-h" or "--help" prints the comment block at the top of the
# script and exits; otherwise `build` is set to the first argument
# (default: build-bench at the top of the tree). The script then calls
# run_servers with its own function for one server.
#
# Each server is an entry "LABEL:PATH" (LABEL is epoll, libuv or coil);
# server_entries builds the usual three. A server is started as
# "PATH PORT", followed by the words of the array `server_args` if the
# script sets it (the TLS servers' certificate and key). While a server
# runs, `port` holds its port and `server_pid` its process id.
#
# BENCH_PIN=N in the environment runs every server and load program on
# CPU N only (taskset), so that they take turns on one core instead of
# waking each other across two.

# shellcheck source=bench/cli.sh
. "$(dirname "${BASH_SOURCE[0]}")/cli.sh" # say, --help
build=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build-bench}

pin=() # the command prefix that applies BENCH_PIN
if [ -n "${BENCH_PIN:-}" ]; then
    if ! command -v taskset >/dev/null; then
        say "BENCH_PIN is set but taskset (util-linux) is missing"
        exit 1
    fi
    if ! taskset -c "$BENCH_PIN" true 2>/dev/null; then
        say "BENCH_PIN=$BENCH_PIN: no such CPU to run on"
        exit 1
    fi
    pin=(taskset -c "$BENCH_PIN")
    say "servers and load on CPU $BENCH_PIN only (BENCH_PIN)"
fi

server_pid=
load_pid=
server_args=()
scratch=

# Stop the running server, if any: SIGTERM, up to 2 s, then SIGKILL.
# coil's example servers leave SIGTERM to its default action (status
# 143): that counts as a clean stop too.
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
    case $status in
    0 | 143) ;;
    *) say "server exited with status $status" ;;
    esac
    return 0
}

# shellcheck disable=SC2317 # called from the traps
cleanup() {
    if [ -n "$load_pid" ]; then
        kill -TERM "$load_pid" 2>/dev/null
        wait "$load_pid" 2>/dev/null
        load_pid=
    fi
    stop_server
    if [ -n "$scratch" ]; then
        rm -rf "$scratch"
        scratch=
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# Make a private temporary directory, `scratch`, removed on exit (by the
# traps above, also when the script is interrupted).
make_scratch() {
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/coil-bench.XXXXXX") || {
        scratch=
        say "cannot make a temporary directory"
        return 1
    }
}

# Run a load program in the background and wait for it, so that a signal
# to the script is handled at once (bash runs traps only between
# foreground commands). Returns the program's status.
run_load() {
    local rc
    "${pin[@]}" "$@" &
    load_pid=$!
    wait "$load_pid"
    rc=$?
    load_pid=
    return "$rc"
}

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

# Start server program $1 on a free port, as "$1 PORT" followed by the
# rest of the arguments; sets server_pid and port. Tries a few ports in
# case another process takes one meanwhile.
start_server() {
    local exe=$1 try i
    shift
    for ((try = 0; try < 5; try++)); do
        port=$(pick_port) || { say "no free port found"; return 1; }
        # taskset execs the server: the pid stays the server's.
        "${pin[@]}" "$exe" "$port" "$@" >&2 &
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

# CPU time process $1 has used so far, user + system, in clock ticks
# (fields 14 and 15 of /proc/PID/stat; the comm field before them may
# hold spaces and parentheses, so the fields are counted from its end).
proc_cpu_ticks() {
    local stat
    read -r stat <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $stat
    echo $((${12} + ${13}))
}

clk_tck=$(getconf CLK_TCK 2>/dev/null) || clk_tck=100

# Print "NAME VALUE ns/req": TICKS clock ticks of CPU over REQUESTS
# requests ($1 NAME, $2 TICKS, $3 REQUESTS).
print_cpu_per_request() {
    awk -v name="$1" -v t="$2" -v n="$3" -v hz="$clk_tck" \
        'BEGIN { if (n > 0) printf "%s %.1f ns/req\n", name, t * 1e9 / hz / n }'
}

# The path of coil's example $1 in the build (examples/$1, or bench/$1
# as the bench build makes it); nothing when it is not there.
find_example() {
    local cand
    for cand in "$build/examples/$1" "$build/bench/$1"; do
        if [ -x "$cand" ]; then
            echo "$cand"
            return
        fi
    done
}

# The servers of benchmark $1 in the build: $1_server_epoll (the
# reference), $1_server_libuv, and coil's example $2. Sets the array
# `servers` to "LABEL:PATH" entries; PATH is empty when not found.
server_entries() {
    servers=("epoll:$build/bench/$1_server_epoll"
        "libuv:$build/bench/$1_server_libuv" "coil:$(find_example "$2")")
}

# For each entry of `servers`: start the server, call function $1 with
# the server's label (port and server_pid set), stop the server. A
# missing libuv or coil server is skipped with a note, a missing epoll
# server or one that does not start is a failure. Returns 1 if anything
# failed (the function returning non-zero included), after trying all.
run_servers() {
    local fn=$1 entry label exe status=0
    for entry in "${servers[@]}"; do
        label=${entry%%:*}
        exe=${entry#*:}
        if [ -z "$exe" ] || [ ! -x "$exe" ]; then
            case $label in
            epoll)
                say "${exe##*/} not built"
                status=1
                ;;
            libuv) say "libuv server skipped (not built: libuv not found, or COIL_BENCH_COMPARE=OFF)" ;;
            coil) say "coil server skipped (not found in $build/examples or $build/bench)" ;;
            esac
            continue
        fi
        if ! start_server "$exe" "${server_args[@]}"; then
            say "$label: server did not start"
            status=1
            continue
        fi
        say "$label: $exe on 127.0.0.1:$port"
        "$fn" "$label" || status=1
        stop_server
    done
    return "$status"
}
