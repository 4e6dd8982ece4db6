#!/usr/bin/env bash
# Writes the seed corpus of tests/fuzz_stream.c into stream/ (the input
# layout is described at the top of that file). Run it again after
# changing the seeds here; inputs the fuzzer found worth keeping (a fixed
# bug's reproducer) go into stream/ as files of their own.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p stream
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

byte() { printf "\\x$(printf %02x "$1")"; }

# seed NAME OPTIONS FAULT-AT FAULT-COUNT CALL... -- CHUNK...
#   CALL is "code,a,b" (decimal); CHUNK is printf-escaped text, or
#   "@N:C" for N copies of the character C; "" is a pause alone.
seed() {
  local name=$1 options=$2 at=$3 count=$4
  shift 4
  local calls=()
  while [ "$1" != "--" ]; do calls+=("$1"); shift; done
  shift
  {
    byte "$options"; byte "$at"; byte "$count"; byte "${#calls[@]}"
    local c code a b
    for c in "${calls[@]}"; do
      IFS=, read -r code a b <<<"$c"
      byte "$code"; byte "$a"; byte "$b"
    done
    local chunk n
    for chunk in "$@"; do
      if [[ $chunk == @* ]]; then
        n=${chunk#@}
        head -c "${n%%:*}" /dev/zero | tr '\0' "${chunk#*:}" >"$tmp"
      else
        printf -- "$chunk" >"$tmp"
      fi
      byte "$(($(wc -c <"$tmp")))"
      cat "$tmp"
    done
  } >"stream/$name"
}

# Calls: 0 read, 1 read_exactly, 2 readline, 3 readuntil(seps[b & 7]),
# 4 readuntil(byte b), 5 set_limit, 6 pause, 7 read_exactly (big); +8
# cancels during the call. Faults in options bits 2-4: 4 EINTR, 8 EAGAIN,
# 12 ECONNRESET, 16 allocations fail.

# Lines and a blank-line separator, split inside the separators.
seed lines 0 0 0 2,255,0 2,255,0 3,255,2 2,255,0 2,255,0 -- \
  "hel" "lo\nwo" "rld\r" "\n\r" "\nabc"
# The limit: a line too long is left buffered, read() takes it.
seed limit 0 0 0 5,8,0 2,64,0 0,20,0 5,0,0 5,0,1 2,64,0 -- \
  "0123456789" "ABCDEF\nxyz\n"
# Separators right at the limit (found) and one past it (-EMSGSIZE).
seed limit_edge 0 0 0 5,5,0 2,64,0 3,64,1 2,64,0 0,64,0 -- \
  "abcde\nvwxyz\r\nabcdef\n"
# Data already buffered: read takes part of it, then the rest; at the
# end the rest fits readuntil's cap exactly.
seed buffered 0 0 0 6,0,0 4,8,51 0,2,0 0,255,0 6,0,0 3,3,2 -- \
  "0123456789" "" "" "xyz"
# A buffer too small (-ENOBUFS, nothing consumed), then large enough.
seed small_cap 0 0 0 2,3,0 2,7,0 2,0,0 4,5,120 -- "xyzxyz\nabcdxef"
# read_exactly across chunks, then short at the end of the stream.
seed exactly 0 0 0 1,5,0 0,0,0 1,200,0 1,100,0 -- \
  "abc" "" "defgh" "@40:q" "" "@30:r"
# Separators that overlap themselves, one split over four chunks.
seed overlap 0 0 0 3,255,3 3,255,4 3,255,5 3,255,7 3,255,6 -- \
  "xaaab" "abaababab" "zz--bou" "nd" "ary-" "-tail\0end"
# Past the 4 KiB first buffer, through small socket buffers.
seed big 1 0 0 6,0,0 7,148,17 2,255,0 -- \
  @255:a @255:b @255:c @255:d @255:e @255:f @255:g @255:h @255:i @255:j \
  @255:k @255:l @255:m @255:n @255:o @255:p @255:q @255:r "\ntail\n"
# The reader is cancelled waiting, and on a later poll; nothing is lost.
seed cancel 0 0 0 10,255,0 42,255,0 6,0,0 8,3,0 2,255,0 2,255,0 -- \
  "" "" "one" "" "\ntwo\n" "" "three\n"
# recv(2) interrupted and told to wait: nothing changes for the reader.
seed eintr 4 0 6 2,255,0 1,10,0 0,255,0 -- "line\n" "0123456789" "rest"
seed eagain 8 1 7 2,255,0 3,255,1 0,255,0 -- "li" "ne\n" "crlf\r\n" "x"
# The peer resets the connection after a few receives.
seed reset 12 2 0 2,255,0 2,255,0 2,255,0 2,255,0 1,50,0 -- \
  "a\n" "" "b\n" "" "c\n" "" "d\n" "" "@40:e"
# Allocations fail: the first buffer, then growing it.
seed nomem 16 0 2 2,255,0 2,255,0 7,0,32 0,255,0 -- \
  "first\n" "second" "\n" "@255:z" "@255:y"
