#!/usr/bin/env bash
# bench/uring.sh - coil's servers on the io_uring backend, standalone.
#
#   bench/uring.sh [BUILD_DIR]    (default: build-bench at the top of the tree)
#
# Runs bench/echo.sh and bench/http.sh twice in one go: as they are (the
# raw-epoll, libuv and coil-on-epoll servers) and with
# COIL_BACKEND=io_uring, whose coil lines are printed as coil_uring
# (echo_coil_uring_1k_cpu, http_coil_uring_rps...). Then the ratios the
# io_uring goal is stated in, from this one run:
#
#   uring_echo_1k_cpu_vs_epoll   x   coil on io_uring / the raw-epoll server
#   uring_http_cpu_vs_epoll      x   the same for the HTTP hello
#   uring_echo_1k_cpu_vs_coil_epoll, uring_http_cpu_vs_coil_epoll
#                                x   coil on io_uring / coil on epoll
#
# BENCH_PIN=N as for the other server scripts. Exits 1 if a run failed.
set -uo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # sets build, handles --help
here=$(dirname "${BASH_SOURCE[0]}")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
for script in echo http; do
    bash "$here/$script.sh" "$build" | tee -a "$out" || status=1
    COIL_BACKEND=io_uring bash "$here/$script.sh" "$build" |
        awk '$1 ~ /_coil_/ { sub(/_coil_/, "_coil_uring_", $1); print }' |
        tee -a "$out" || status=1
done
awk '{ v[$1] = $2 }
     function ratio(name, a, b) {
         if (v[a] > 0 && v[b] > 0) printf "%s %.2f x\n", name, v[a] / v[b]
     }
     END {
         ratio("uring_echo_1k_cpu_vs_epoll", "echo_coil_uring_1k_cpu", "echo_epoll_1k_cpu")
         ratio("uring_http_cpu_vs_epoll", "http_coil_uring_cpu", "http_epoll_cpu")
         ratio("uring_echo_1k_cpu_vs_coil_epoll", "echo_coil_uring_1k_cpu", "echo_coil_1k_cpu")
         ratio("uring_http_cpu_vs_coil_epoll", "http_coil_uring_cpu", "http_coil_cpu")
     }' "$out"
exit "$status"
