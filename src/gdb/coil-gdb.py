# SPDX-License-Identifier: MIT
"""
coil-gdb.py - gdb commands to look at the loops and tasks of a live coil
process.

    (gdb) source /path/to/coil-gdb.py
    (gdb) coil loops                  the loops running on the threads
    (gdb) coil tasks [LOOP]           a loop's unfinished tasks
    (gdb) coil bt [-full] ID [LOOP]   a task's backtrace, taken on its stack
    (gdb) coil bt [-full] loop [LOOP] the loop's own frames while a task runs

LOOP is any expression that gives a loop: a `coil_loop_t *` variable, an
address (`coil tasks 0x5555555592a0`), `$1`... Without it, the loop running
on the selected thread is used, else the only one running in the process.

The commands read the library's internals through its debug info (build
coil with -g: RelWithDebInfo or Debug), so they follow the layout of the
coil they inspect; the names below are those of src/task_internal.h,
src/loop_internal.h, src/context.h and src/run.c.

There is no registry of loops: a loop is found on the thread that runs it,
through the thread-local `running_loop` of src/run.c (gdb reads it with
libthread_db). A loop that is not running (made but not run yet, or
between two runs) is not listed; name it with an expression.

A suspended task keeps its registers where the context switch saved them
(src/context_x86_64.S, src/context_ucontext.c). `coil bt` loads them into
the loop thread's registers, runs gdb's own `bt`, and puts the thread's
registers back, whatever happens; nothing of the process runs meanwhile.
That needs a live process (a core file's registers cannot be written) on
x86-64. coil loops and coil tasks work on core files too. gdb 10 or later.
"""

import functools
import struct

import gdb

# enum coil__task_state (src/task_internal.h).
TASK_PENDING, TASK_RUNNING, TASK_SUSPENDED, TASK_DONE = range(4)

# enum coil__loop_state (src/loop_internal.h).
LOOP_STATES = {0: "idle", 1: "running", 2: "closed"}

# What each wait (the struct coil__wait_ops a suspended task's wait_ops
# points to) is, by the ops' symbol.
WAIT_KINDS = {
    "await_ops": "await",                  # task.c: coil_await, join
    "sleep_ops": "sleep",                  # task.c: coil_sleep
    "yield_ops": "yield",                  # task.c: coil_yield
    "ww_ops": "fd",                        # watch_wait.c: sockets, streams
    "interruptible_ops": "waitq",          # waitq.c: lock, queue, event...
    "shielded_ops": "waitq (shielded)",    # waitq.c: immune to cancels
    "group_wait_ops": "task group",        # group.c
    "ws_ops": "gather/wait",               # combinators.c
    "sw_ops": "signal",                    # signal.c
    "pw_ops": "process exit",              # process.c
}

# COIL__EV_WRITE (src/poller.h), a macro: not in the debug info.
EV_WRITE = 2

# Bound on a list walk, against a corrupt or concurrently changing list.
MAX_TASKS = 1 << 20

MASK64 = (1 << 64) - 1

# x86-64: the registers a context resumes with, the ones coil bt writes.
X86_64_REGS = ("rip", "rsp", "rbp", "rbx", "r12", "r13", "r14", "r15")

# The "asm" switch's frame (src/context_x86_64.S, struct frame in
# src/context_asm.c): coil__context_asm_swap pushes rbp, rbx, r12, r13,
# r14, r15, then 8 bytes holding the MXCSR (4), the x87 control word (2)
# and padding (2), and stores rsp in ctx->sp. So from ctx->sp upwards, in
# 8-byte words: the control words, r15, r14, r13, r12, rbx, rbp, and the
# return address the swap jumps back to; the context resumes there with
# rsp just above the frame.
ASM_FRAME_WORDS = ("fpctl", "r15", "r14", "r13", "r12", "rbx", "rbp", "rip")
ASM_FRAME_SIZE = 8 * len(ASM_FRAME_WORDS)

# The "ucontext" switch: ctx->sp points to a ucontext_t that swapcontext
# filled; glibc's x86-64 indices into uc_mcontext.gregs (<sys/ucontext.h>,
# REG_R12...; fixed by the ABI). swapcontext stores the return address as
# rip and the stack pointer as it is after the return.
UC_GREGS = {"r12": 4, "r13": 5, "r14": 6, "r15": 7, "rbp": 10, "rbx": 11,
            "rsp": 15, "rip": 16}
# offsetof(ucontext_t, uc_mcontext.gregs) on glibc x86-64, should the debug
# info lack ucontext_t.
UC_GREGS_OFFSET = 40


# ---------------------------------------------------------------------
# Reading the process
# ---------------------------------------------------------------------

def _type(name):
    """A struct type of the library, from its debug info."""
    try:
        return gdb.lookup_type(name)
    except gdb.error:
        raise gdb.GdbError(
            "coil: no type '%s' in the debug info: is the program running, "
            "and is coil built with -g?" % name)


def _inferior():
    inf = gdb.selected_inferior()
    if inf.pid == 0 or not inf.threads():
        raise gdb.GdbError("coil: the program is not running")
    return inf


def _addr(value):
    """A pointer value as a Python int."""
    return int(value) & MASK64


def _field_offset(struct_type, field):
    for f in struct_type.strip_typedefs().fields():
        if f.name == field:
            return f.bitpos // 8
    raise gdb.GdbError("coil: %s has no field %s" % (struct_type, field))


def _container(node, struct_type, field):
    """coil__container_of: the struct_type * whose field node points to."""
    addr = _addr(node) - _field_offset(struct_type, field)
    return gdb.Value(addr).cast(struct_type.pointer())


def _list_nodes(head):
    """The node pointers of a struct coil__list (src/list.h): circular, an
    empty list is a head that points to itself."""
    head_addr = _addr(head.address)
    node = head["next"]
    for _ in range(MAX_TASKS):
        if _addr(node) == head_addr:
            return
        if _addr(node) == 0:
            raise gdb.GdbError("coil: a NULL link in the list at 0x%x"
                               % head_addr)
        yield node
        node = node["next"]
    raise gdb.GdbError("coil: the list at 0x%x does not end (corrupt?)"
                       % head_addr)


@functools.lru_cache(maxsize=4096)
def _symbol(addr):
    """'name' or 'name+offset' for an address, or None (info symbol)."""
    if not addr:
        return None
    try:
        out = gdb.execute("info symbol 0x%x" % addr, to_string=True)
    except gdb.error:
        return None
    if out.startswith("No symbol"):
        return None
    return out.split(" in section ")[0].strip().replace(" + ", "+")


@functools.lru_cache(maxsize=4096)
def _code_location(addr):
    """'symbol+off (file.c:line)' for a return address."""
    if not addr:
        return "?"
    sym = _symbol(addr) or "0x%x" % addr
    # A return address is the instruction after the call: look the line up
    # one byte back, inside the call.
    sal = gdb.find_pc_line(addr - 1)
    if sal.symtab is not None and sal.line:
        return "%s (%s:%d)" % (sym, sal.symtab.filename.split("/")[-1],
                               sal.line)
    return sym


def _forget_symbols(_event=None):
    """The memos of _symbol and _code_location are per set of objfiles."""
    _symbol.cache_clear()
    _code_location.cache_clear()


gdb.events.new_objfile.connect(_forget_symbols)
gdb.events.clear_objfiles.connect(_forget_symbols)


def _string(value):
    try:
        return value.string()
    except (gdb.error, UnicodeDecodeError):
        return "0x%x" % _addr(value)


def _tls_symbol(name, type_name):
    """A thread-local of the library, by name and type (a program may have
    a static of the same name)."""
    for sym in gdb.lookup_static_symbols(name):
        if str(sym.type) == type_name:
            return sym
    sym = gdb.lookup_global_symbol(name)
    if sym is not None and str(sym.type) == type_name:
        return sym
    return None


def _frame_level(frame):
    """Frame.level(), which gdb has since version 11."""
    if hasattr(frame, "level"):
        return frame.level()
    level, f = 0, gdb.newest_frame()
    while f is not None and f != frame:
        level, f = level + 1, f.older()
    return level


class _KeepSelection:
    """Restore the selected thread and frame on exit."""

    def __enter__(self):
        self.thread = gdb.selected_thread()
        try:
            self.level = _frame_level(gdb.selected_frame())
        except gdb.error:
            self.level = None
        return self

    def __exit__(self, *exc):
        if self.thread is None or not self.thread.is_valid():
            return False
        self.thread.switch()
        if self.level is not None:
            try:
                frame = gdb.newest_frame()
                for _ in range(self.level):
                    frame = frame.older() or frame
                frame.select()
            except gdb.error:
                pass
        return False


# ---------------------------------------------------------------------
# Loops and tasks
# ---------------------------------------------------------------------

class Loop:
    """A struct coil_loop *, with the thread it runs on (None: unknown)."""

    def __init__(self, value, thread=None, running_task=None):
        self.value = value
        self.thread = thread
        self.running_task = running_task  # coil__task_running, if known

    @property
    def addr(self):
        return _addr(self.value)

    def context_ops(self):
        """The context switch's name: "asm" or "ucontext"."""
        return _string(self.value["tasks"]["ctx_ops"]["name"])

    def tasks(self):
        task_type = _type("struct coil_task")
        for node in _list_nodes(self.value["tasks"]["all"]):
            yield _container(node, task_type, "link")

    def find_task(self, task_id):
        for t in self.tasks():
            if int(t["id"]) == task_id:
                return t
        raise gdb.GdbError("coil: loop 0x%x has no unfinished task %d "
                           "(see coil tasks)" % (self.addr, task_id))

    def describe_thread(self):
        if self.thread is None:
            return "not running on any thread"
        return "thread %d" % self.thread.num


def running_loops():
    """[Loop] for every thread that runs one, the thread's running task
    noted, and {thread: error} for the threads that could not be read."""
    inf = _inferior()
    loop_sym = _tls_symbol("running_loop", "struct coil_loop *")
    if loop_sym is None:
        raise gdb.GdbError(
            "coil: no running_loop symbol: is libcoil loaded, with its "
            "debug info?")
    task_sym = _tls_symbol("coil__task_running", "struct coil_task *")
    loops, errors = [], {}
    with _KeepSelection():
        for thread in sorted(inf.threads(), key=lambda th: th.num):
            if thread.is_running():
                errors[thread] = "running (non-stop mode): stop it first"
                continue
            thread.switch()
            try:
                loop = loop_sym.value()
                if _addr(loop) == 0:
                    continue
                task = task_sym.value() if task_sym is not None else None
                if task is not None and _addr(task) == 0:
                    task = None
                loops.append(Loop(loop, thread, task))
            except gdb.error as e:
                errors[thread] = str(e)
    return loops, errors


def resolve_loop(expr):
    """The Loop an optional expression names (see the module's help)."""
    if expr:
        value = gdb.parse_and_eval(expr)
        ptr_type = _type("struct coil_loop").pointer()
        if value.type.strip_typedefs().code == gdb.TYPE_CODE_STRUCT:
            value = value.address
        value = value.cast(ptr_type)
        if _addr(value) == 0:
            raise gdb.GdbError("coil: the loop is NULL")
        try:
            loops, _ = running_loops()
        except gdb.GdbError:
            loops = []
        for loop in loops:
            if loop.addr == _addr(value):
                return loop
        return Loop(value)
    loops, _ = running_loops()
    here = gdb.selected_thread()
    for loop in loops:
        if loop.thread == here:
            return loop
    if len(loops) == 1:
        return loops[0]
    if not loops:
        raise gdb.GdbError(
            "coil: no loop runs on any thread; name one: coil tasks EXPR "
            "(a coil_loop_t * or its address)")
    raise gdb.GdbError(
        "coil: %d loops run (%s); pick one: select its thread (thread N), "
        "or coil tasks EXPR" % (len(loops), ", ".join(
            "0x%x on thread %d" % (l.addr, l.thread.num) for l in loops)))


def task_name(t):
    name = t["name"]
    if _addr(name):
        return _string(name)
    return _string(t["defname"])


def task_state(t):
    """As coil_loop_dump_tasks says it (state_name in task.c)."""
    state = int(t["state"])
    if state == TASK_PENDING:
        return "pending"
    if state == TASK_RUNNING:
        return "running"
    if state == TASK_SUSPENDED:
        return "ready" if bool(t["queued"]) else "suspended"
    return "done"


def _wait_detail(t, ops):
    """A few words on what the wait waits for, read from the wait's own
    struct on the task's stack; None if it cannot be told."""
    wait = t["wait"]
    if _addr(wait) == 0:
        return None
    if ops == "await_ops":
        fut = wait.cast(_type("struct await_wait").pointer())["fut"]
        task_ops = gdb.lookup_static_symbol("task_future_ops")
        if (task_ops is not None
                and _addr(fut["ops"]) == _addr(task_ops.value().address)):
            other = _container(fut, _type("struct coil_task"), "fut")
            return "task %d %s" % (int(other["id"]), task_name(other))
        return "future 0x%x" % _addr(fut)
    if ops == "ww_ops":
        ww = wait.cast(_type("struct watch_wait").pointer())
        direction = "writable" if int(ww["dir"]) == EV_WRITE else "readable"
        return "fd %d %s" % (int(ww["w"]["fd"]), direction)
    if ops in ("interruptible_ops", "shielded_ops"):
        q = wait.cast(_type("struct waitq_wait").pointer())["q"]
        what = _string(q["what"]) if _addr(q["what"]) else "waitq"
        return "%s 0x%x (%d waiting)" % (what, _addr(q["owner"]),
                                         int(q["len"]))
    return None


def task_waits(t):
    """What a suspended task waits in: its wait_ops' symbol, the kind of
    wait, and details where the wait's struct tells them."""
    if int(t["state"]) != TASK_SUSPENDED or _addr(t["wait_ops"]) == 0:
        return ""
    ops = _symbol(_addr(t["wait_ops"])) or "0x%x" % _addr(t["wait_ops"])
    try:
        detail = _wait_detail(t, ops)
    except (gdb.error, gdb.GdbError):
        detail = None  # the internals changed: the symbol says enough
    detail = detail or WAIT_KINDS.get(ops)
    return "%s: %s" % (ops, detail) if detail else ops


def _table(rows):
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        gdb.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                  + "\n")


# ---------------------------------------------------------------------
# Saved contexts
# ---------------------------------------------------------------------

def _read_words(addr, n):
    mem = _inferior().read_memory(addr, 8 * n)
    return struct.unpack("<%dQ" % n, bytes(mem))


def saved_registers(ctx, ops_name):
    """{register: value} a suspended struct coil__context resumes with."""
    arch = gdb.selected_inferior().architecture().name()
    if arch != "i386:x86-64":
        raise gdb.GdbError("coil bt: x86-64 only (this is %s)" % arch)
    sp = _addr(ctx["sp"])
    if sp == 0:
        raise gdb.GdbError("coil bt: the context has no saved state")
    if ops_name == "asm":
        words = _read_words(sp, len(ASM_FRAME_WORDS))
        regs = dict(zip(ASM_FRAME_WORDS, words))
        del regs["fpctl"]
        regs["rsp"] = sp + ASM_FRAME_SIZE
    elif ops_name == "ucontext":
        try:
            uc_type = _type("ucontext_t")
            gregs = (sp + _field_offset(uc_type, "uc_mcontext")
                     + _field_offset(_type("mcontext_t"), "gregs"))
        except gdb.GdbError:
            gregs = sp + UC_GREGS_OFFSET
        words = _read_words(gregs, max(UC_GREGS.values()) + 1)
        regs = {r: words[i] for r, i in UC_GREGS.items()}
    else:
        raise gdb.GdbError("coil bt: unknown context switch '%s'" % ops_name)
    # A task's saved rsp lies on its own stack: a check that the frame was
    # read right (a thread's context has no stack_base).
    base = _addr(ctx["stack_base"])
    if base and not base <= regs["rsp"] <= base + int(ctx["stack_size"]):
        raise gdb.GdbError(
            "coil bt: the saved rsp 0x%x is outside the context's stack "
            "0x%x-0x%x: corrupt, or not suspended" %
            (regs["rsp"], base, base + int(ctx["stack_size"])))
    return regs


def backtrace_with(thread, regs, bt_args):
    """Run bt with the given registers loaded into thread (None: the
    selected one), then restore them: frame 0 is where the context will
    resume. The registers are restored even when bt fails or is
    interrupted."""
    if thread is not None and thread.is_running():
        raise gdb.GdbError("coil bt: thread %d is running: stop it first"
                           % thread.num)
    with _KeepSelection():
        if thread is not None:
            thread.switch()
        # Only the innermost frame's registers are the thread's own.
        frame = gdb.newest_frame()
        frame.select()
        saved = {r: _addr(frame.read_register(r)) for r in regs}
        written = []
        try:
            for r in X86_64_REGS:
                if r not in regs:
                    continue
                try:
                    gdb.execute("set $%s = 0x%x" % (r, regs[r]),
                                to_string=True)
                except gdb.error as e:
                    raise gdb.GdbError(
                        "coil bt: cannot load the saved registers (%s): "
                        "coil bt needs a live process, not a core file" % e)
                written.append(r)
            gdb.execute(("bt " + bt_args).rstrip())
        finally:
            failed = []
            for r in reversed(written):
                try:
                    gdb.execute("set $%s = 0x%x" % (r, saved[r]),
                                to_string=True)
                except gdb.error as e:
                    failed.append("%s (0x%x): %s" % (r, saved[r], e))
            if failed:
                raise gdb.GdbError("coil bt: COULD NOT RESTORE registers: "
                                   + "; ".join(failed))


# ---------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------

class CoilPrefix(gdb.Command):
    """Inspect coil event loops and tasks (coil loops, coil tasks, coil bt).

LOOP, where a command takes one, is any expression that gives a loop:
a coil_loop_t * variable, an address, $1... Without it, the loop running
on the selected thread is used, else the only loop running in the process.
Needs coil's debug info (RelWithDebInfo or Debug)."""

    def __init__(self):
        super().__init__("coil", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class CoilLoops(gdb.Command):
    """List the coil loops running on the process's threads.

Usage: coil loops

A loop is found on the thread that runs it (coil's thread-local
running_loop). For each: the thread, the loop's address, its state, how
many unfinished tasks it has, its context switch, and the task running
on it now if one is (none: the loop itself is polling or running
callbacks). A loop that is not running is not found; name it with
an expression in coil tasks."""

    def __init__(self):
        super().__init__("coil loops", gdb.COMMAND_DATA, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        if arg.strip():
            raise gdb.GdbError("usage: coil loops")
        loops, errors = running_loops()
        here = gdb.selected_thread()
        rows = [("", "Thread", "Loop", "State", "Tasks", "Context",
                 "Running task")]
        for loop in loops:
            v = loop.value
            state = int(v["state"])
            running = "-"
            if loop.running_task is not None:
                t = loop.running_task
                running = "%d %s" % (int(t["id"]), task_name(t))
            rows.append(("*" if loop.thread == here else "",
                         "%d" % loop.thread.num, "0x%x" % loop.addr,
                         LOOP_STATES.get(state, str(state)),
                         "%d" % int(v["tasks"]["count"]),
                         loop.context_ops(), running))
        if loops:
            _table(rows)
        else:
            gdb.write("No coil loop runs on any thread.\n")
        for thread, err in errors.items():
            gdb.write("(thread %d: cannot read its running loop: %s)\n"
                      % (thread.num, err))


class CoilTasks(gdb.Command):
    """List a coil loop's unfinished tasks.

Usage: coil tasks [LOOP]

For each task: its id (for coil bt), address (p *(struct coil_task *)ADDR),
name, state (pending: not started; running; suspended; ready: woken, its
next step queued; done), function, what it waits on (the wait's ops
symbol, with details: the task or future awaited, the fd, the lock or
queue), and where it was spawned."""

    def __init__(self):
        super().__init__("coil tasks", gdb.COMMAND_DATA,
                         gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg, from_tty):
        loop = resolve_loop(arg.strip())
        rows = [("Id", "Task", "Name", "State", "Function", "Waits on",
                 "Spawned at")]
        for t in loop.tasks():
            fn = _addr(t["fn"])
            rows.append(("%d" % int(t["id"]), "0x%x" % _addr(t),
                         task_name(t), task_state(t),
                         _symbol(fn) or "0x%x" % fn, task_waits(t),
                         _code_location(_addr(t["spawn_site"]))))
        gdb.write("Loop 0x%x (%s, context %s): %d unfinished tasks\n"
                  % (loop.addr, loop.describe_thread(), loop.context_ops(),
                     len(rows) - 1))
        if len(rows) > 1:
            _table(rows)


class CoilBt(gdb.Command):
    """Backtrace of a coil task, taken on its own stack.

Usage: coil bt [-full] TASK-ID [LOOP]
       coil bt [-full] loop [LOOP]

TASK-ID is the task's id (coil tasks). A suspended (or ready) task's
registers are where its context switch saved them: they are loaded into
the loop thread, gdb's bt runs, and the thread's registers are put back.
Frame 0 is where the task will resume (inside coil's switch); the task's
own frames follow. A running task's frames are its thread's: that
thread's bt is shown. -full also prints each frame's locals (bt -full).

"coil bt loop" shows the loop's own frames (down to coil_run or
coil_loop_run_*, and main) while one of its tasks runs: they are saved
in the loop's context then.

Needs a live process (registers cannot be written in a core file), on
x86-64."""

    def __init__(self):
        super().__init__("coil bt", gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        words = arg.split(None, 1)
        bt_args = ""
        if words and words[0] == "-full":
            bt_args = "-full"
            words = words[1].split(None, 1) if len(words) > 1 else []
        if not words:
            raise gdb.GdbError("usage: coil bt [-full] TASK-ID|loop [LOOP]")
        loop = resolve_loop(words[1].strip() if len(words) > 1 else "")
        if words[0] == "loop":
            self._loop_bt(loop, bt_args)
            return
        try:
            task_id = int(words[0], 0)
        except ValueError:
            raise gdb.GdbError("coil bt: '%s' is not a task id" % words[0])
        t = loop.find_task(task_id)
        state = int(t["state"])
        head = "Task %d %s (%s), %s" % (task_id, task_name(t),
                                        _symbol(_addr(t["fn"])) or "?",
                                        task_state(t))
        if state == TASK_PENDING:
            gdb.write(head + ": not started, no frames yet\n")
        elif state == TASK_DONE:
            gdb.write(head + ": finished, no frames\n")
        elif state == TASK_RUNNING:
            if loop.thread is None:
                raise gdb.GdbError(
                    "coil bt: task %d is running, but the loop's thread is "
                    "unknown: see its thread's bt" % task_id)
            gdb.write("%s on thread %d: its frames are the thread's\n"
                      % (head, loop.thread.num))
            with _KeepSelection():
                loop.thread.switch()
                gdb.execute(("bt " + bt_args).rstrip())
        else:
            waits = task_waits(t)
            gdb.write("%s%s\n" % (head, " in " + waits if waits else ""))
            regs = saved_registers(t["ctx"], loop.context_ops())
            backtrace_with(loop.thread, regs, bt_args)

    @staticmethod
    def _loop_bt(loop, bt_args):
        # The loop's context (tasks.sched) holds saved registers only while
        # one of its tasks runs; otherwise they are stale.
        if not any(int(t["state"]) == TASK_RUNNING for t in loop.tasks()):
            raise gdb.GdbError(
                "coil bt loop: no task of loop 0x%x is running: the loop's "
                "frames are its thread's own (%s)" %
                (loop.addr, loop.describe_thread()))
        gdb.write("Loop 0x%x (%s), switched away to a task\n"
                  % (loop.addr, loop.describe_thread()))
        regs = saved_registers(loop.value["tasks"]["sched"],
                               loop.context_ops())
        backtrace_with(loop.thread, regs, bt_args)


CoilPrefix()
CoilLoops()
CoilTasks()
CoilBt()
