#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_gdb.sh - the gdb extension (src/gdb/coil-gdb.py) on a live process.
#
# Usage: test_gdb.sh PIPELINE [COIL-GDB.PY]
#
# PIPELINE is the built examples/pipeline (with debug info: RelWithDebInfo
# or Debug); COIL-GDB.PY defaults to src/gdb/coil-gdb.py of this tree. The
# context switch is the process's default, or COIL_CONTEXT's (asm,
# ucontext), as for the other tests.
#
# gdb runs the example in batch mode and stops it twice:
#   1. at the first coil_sleep: a worker task runs (it is about to sleep),
#      the main task awaits the producer, the collector waits on its queue;
#   2. when the loop is about to block in its poller (coil__watch_poll with
#      a nonzero timeout): every task is suspended.
# Each time it runs coil loops, coil tasks and coil bt on suspended tasks
# (and coil bt loop in 1), and checks that the thread's registers are the
# same after coil bt as before. Then the example runs on to its normal
# end, which it could not reach if coil bt had left a register changed.
#
# Exits 0 on success, 1 on a mismatch (printing what gdb said), 77 (ctest's
# SKIP_RETURN_CODE) if gdb is not installed. gdb is killed after 120 s.

set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 PIPELINE [COIL-GDB.PY]" >&2
    exit 2
fi
if ! command -v gdb >/dev/null 2>&1; then
    echo "gdb is not installed: skipped"
    exit 77
fi

bin=$1
ext=${2:-$(cd "$(dirname "$0")/../../src/gdb" && pwd)/coil-gdb.py}
if [ ! -x "$bin" ]; then
    echo "not an executable: $bin" >&2
    exit 2
fi
if [ ! -r "$ext" ]; then
    echo "no gdb extension at $ext" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/coil-gdb-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The gdb script. Sections of the output start with "=== name" lines.
cat >"$work/script.gdb" <<EOF
set pagination off
set confirm off
set width 0
set print thread-events off
source $ext

python
import gdb

class BtOf(gdb.Command):
    """bt-of FN: coil bt of the first suspended task whose function is FN
(found in coil tasks' Function column)."""

    def __init__(self):
        super().__init__("bt-of", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        fn = arg.strip()
        for line in gdb.execute("coil tasks", to_string=True).splitlines():
            cols = line.split()
            if len(cols) >= 5 and cols[3] == "suspended" and cols[4] == fn:
                gdb.write("=== bt %s (task %s)\n" % (fn, cols[0]))
                gdb.execute("coil bt " + cols[0])
                return
        raise gdb.GdbError("no suspended task runs %s" % fn)

BtOf()
end

break coil_sleep
run
delete
echo === regs before\n
info registers rip rsp rbp rbx r12 r13 r14 r15
echo === loops 1\n
coil loops
echo === tasks 1\n
coil tasks
bt-of collector
bt-of main_task
echo === bt loop\n
coil bt loop
echo === regs after\n
info registers rip rsp rbp rbx r12 r13 r14 r15
echo === end 1\n

# At the poller's first instruction, rsi is the timeout: nonzero means
# nothing is ready, the loop is about to wait.
break *coil__watch_poll if \$rsi != 0
continue
delete
echo === loops 2\n
coil loops
echo === tasks 2\n
coil tasks
bt-of worker
echo === end 2\n
continue
EOF

# LeakSanitizer cannot run under ptrace: in a sanitizer build, the example
# would fail at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

out="$work/gdb.out"
timeout -k 10 120 gdb -nx -batch -x "$work/script.gdb" --args "$bin" \
    </dev/null >"$out" 2>&1
rc=$?

failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# The lines of section NAME (between "=== NAME" and the next "===").
section() {
    awk -v name="=== $1" '
        $0 == name || index($0, name " ") == 1 { on = 1; next }
        /^=== / { on = 0 }
        on' "$out"
}

# expect SECTION REGEX WHAT: a line of the section matches.
expect() {
    section "$1" | grep -Eq -- "$2" || fail "$1: $3 (no line matches /$2/)"
}

if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    fail "gdb timed out"
fi

ctx='(asm|ucontext)'
[ -n "${COIL_CONTEXT:-}" ] && ctx=$COIL_CONTEXT
hex='0x[0-9a-f]+'
task="^[0-9]+ +$hex +Task-[0-9]+ +" # a coil tasks row, up to the state
frame='^#[0-9]+ +'                   # a bt line
at_line='\(.*pipeline\.c:[0-9]+$'   # ... of a function of the example

# 1. A worker runs.
expect "loops 1" "^\* +1 +$hex +running +6 +$ctx +[0-9]+ Task-[0-9]+\$" \
    "the loop, running a task, 6 tasks, context $ctx"
expect "tasks 1" "^Loop $hex \(thread 1, context $ctx\): 6 unfinished" \
    "the heading"
expect "tasks 1" "^1 +$hex +Task-1 +suspended +main_task +await_ops: task " \
    "main_task awaiting a task"
expect "tasks 1" "^1 .* coil_run\+[0-9]+ \(runner\.c:[0-9]+\)\$" \
    "main_task spawned by coil_run"
expect "tasks 1" "${task}suspended +collector +interruptible_ops: queue get " \
    "the collector waiting on its queue"
expect "tasks 1" "${task}running +worker .*\(pipeline\.c:[0-9]+\)\$" \
    "a running worker, spawned in pipeline.c"
expect "tasks 1" "${task}[a-z]+ +producer " "the producer"
n=$(section "tasks 1" | grep -Ec "$task")
[ "$n" = 6 ] || fail "tasks 1: $n task rows, not 6"
expect "bt collector" \
    "^Task [0-9]+ Task-[0-9]+ \(collector\), suspended in interruptible_ops" \
    "the collector's heading"
expect "bt collector" "$frame.*coil_queue_get " \
    "coil_queue_get in the collector's frames"
expect "bt collector" "$frame.* in collector $at_line" \
    "the collector function in its frames"
expect "bt main_task" "$frame.*coil_task_join " \
    "coil_task_join in main_task's frames"
expect "bt main_task" "$frame.*run_pipeline " \
    "run_pipeline in main_task's frames"
# coil_run's frame, with its address ("0x... in coil_run (") or inlined
# into it ("coil_run (": a frame gdb shows for the function inlined).
expect "bt loop" "$frame(0x[0-9a-f]+ in )?coil_run \(" \
    "coil_run in the loop's frames"
expect "bt loop" "$frame.* in main \(" "main in the loop's frames"
section "regs before" >"$work/before"
section "regs after" >"$work/after"
if [ ! -s "$work/before" ] || ! cmp -s "$work/before" "$work/after"; then
    fail "the registers differ after coil bt:"
    diff "$work/before" "$work/after"
fi

# 2. The loop is about to wait: every task is suspended, none runs.
expect "loops 2" "^\* +1 +$hex +running +6 +$ctx +-\$" \
    "the loop, no task running"
n=$(section "tasks 2" | grep -Ec "${task}suspended ")
[ "$n" = 6 ] || fail "tasks 2: $n suspended tasks, not 6"
expect "tasks 2" "${task}suspended +worker +sleep_ops" "a worker sleeping"
expect "bt worker" "$frame.* in coil_sleep " \
    "coil_sleep in the worker's frames"
expect "bt worker" "$frame.* in worker $at_line" \
    "the worker function in its frames"

# 3. The example ran on to its end.
grep -q "^processed 20 items, sum of squares 2870\$" "$out" ||
    fail "the example did not finish its work"
grep -Eq "^\[Inferior 1 \(process [0-9]+\) exited normally\]" "$out" ||
    fail "the example did not exit normally"
grep -Eq "^=== end 2\$" "$out" || fail "gdb stopped early (an error above?)"

if [ $failures -ne 0 ]; then
    echo "--- gdb said (exit status $rc):"
    cat "$out"
    echo "--- $failures mismatches"
    exit 1
fi
echo "coil-gdb: all checks passed (context ${COIL_CONTEXT:-default})"
exit 0
