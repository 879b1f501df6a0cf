"""Compile options of every shim library (shim/BUILD says why each is there)."""

# Everything internal is hidden; the abort path unwinds through the shim's
# own frames (-fexceptions).
SHIM_COPTS = [
    "-fvisibility=hidden",
    "-fexceptions",
    "-D_GNU_SOURCE",
]

# Code that runs in a target thread's signal handlers (dump, act, the
# abort's trace traps) and what it calls: not built with ThreadSanitizer's
# instrumentation. Its handlers go into the kernel around TSan (core/signals.c):
# an instrumented handler interrupting the thread inside TSan's runtime would
# re-enter it, and on a thread TSan does not know (a foreign one) it would
# crash. TSan still sees the rest of the shim (registry, thread and
# blocking-call hooks, server, commands).
SIGCTX_COPTS = SHIM_COPTS + ["-fno-sanitize=thread"]

# Every room's C sources, for tests that read them (tests/unit/lock_test).
def c_sources():
    native.filegroup(
        name = "c_sources",
        srcs = native.glob(["*.c"]),
        visibility = ["//shim:__pkg__"],
    )

def shim_library(name, signal_context = False, **kwargs):
    """A room's part of libkillshim.so: linked whole (alwayslink: its hooks
    and handlers are reached by name, not by reference) and only ever into
    the library (linkstatic). signal_context: built with SIGCTX_COPTS."""
    native.cc_library(
        name = name,
        copts = SIGCTX_COPTS if signal_context else SHIM_COPTS,
        alwayslink = True,
        linkstatic = True,
        **kwargs
    )
