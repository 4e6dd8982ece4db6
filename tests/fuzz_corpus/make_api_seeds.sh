#!/usr/bin/env bash
# Writes the seed corpus of tests/fuzz_api.c into api/ (the input layout
# is described at the top of that file): OPTIONS, then operations of four
# bytes "code,a,b,c" (decimal). Inputs that found a bug in coil are kept
# in api/ as files of their own (they are not written by this script).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p api
byte() { printf "\\x$(printf %02x "$1")"; }
seed() {
  local name=$1 options=$2
  shift 2
  {
    byte "$options"; byte "$#"
    local op code a b c
    for op in "$@"; do
      IFS=, read -r code a b c <<<"$op"
      byte "$code"; byte "$a"; byte "$b"; byte "$c"
    done
  } >"api/$name"
}
# Codes: 0 write, 1 read, 2 drain, 3 wait_closed, 4 write_eof, 5 close,
# 6 abort, 7 unref, 8 set_limit, 9 set_write_limits, 10 reopen, 11-13 raw
# send/recv/other, 14-16 udp send/recv/other, 17 cancel, 18 timeout,
# 19 pause, 20 server, 21 fault, 22 nomem, 23 chaos.
seed empty 0
seed echo 0 0,0,100,3 1,1,200,0 19,8,50,0 1,1,255,4 0,1,50,0 1,0,100,0
seed tcp 0 0,4,200,10 1,5,255,16 0,5,10,0 1,4,100,2 4,4,0,0 1,5,255,0
seed lines 1 1,2,255,4 0,3,255,20 1,2,40,7 8,2,30,0 1,2,255,6 19,8,10,0
seed close 0 0,0,255,30 5,0,0,0 1,1,255,0 0,1,100,0 6,1,0,0 7,0,0,0
seed raw 1 11,0,255,20 12,1,200,2 11,1,100,0 12,0,255,0 13,0,0,0 19,1,0,0
seed udp 0 15,0,100,0 14,1,50,0 14,0,30,0 15,1,10,0 16,0,0,0 14,1,5,0
seed cancel 0 1,0,10,0 18,0,20,0 1,2,10,0 17,0,0,0 19,8,30,0 0,1,20,0
seed server 0 20,0,0,1 20,0,0,0 10,2,0,0 20,0,0,2 10,3,0,0 0,6,100,3
seed faults 2 21,2,3,0 0,0,200,5 1,1,255,0 21,5,2,0 0,1,100,1 23,1,0,0
seed nomem 0 22,0,0,3 0,0,100,2 1,1,255,0 10,0,0,0 22,0,1,2 0,2,30,40
