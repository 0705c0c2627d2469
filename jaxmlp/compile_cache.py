"""A persistent cache of compiled programs on disk, so a new process does not compile them again.

Compiling a sweep's epoch takes seconds (1.5-2 s for a tiny MLP on this project's 2-core CPU), often
more than a short search trains. JAX can keep compiled executables on disk (its persistent compilation
cache, keyed by the program, the devices, the flags and the versions); jaxmlp turns it on for its own
sweeps, in ``$JAXMLP_COMPILATION_CACHE`` (default ``$XDG_CACHE_HOME/jaxmlp/xla``, i.e. ``~/.cache/...``).
``JAXMLP_COMPILATION_CACHE=off`` leaves it off; a cache directory the user gave JAX is left as it is.
Programs that took at least a quarter of a second to compile are kept (JAX keeps those over a second: a
sweep's init and test programs take 0.3-1 s here, and loading one from disk takes milliseconds).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "JAXMLP_COMPILATION_CACHE"
MIN_COMPILE_S = 0.25


def directory() -> Path | None:
    """Where compiled programs are kept, or None when turned off."""
    given = os.environ.get(ENV)
    if given is not None:
        return None if given.strip().lower() in ("", "off", "0", "no", "false") else Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxmlp" / "xla"


def enable() -> Path | None:
    """Turn the cache on (once per process) unless it is off or JAX already has one; returns its folder."""
    import jax

    if jax.config.jax_compilation_cache_dir:   # the user's own setting wins
        return Path(jax.config.jax_compilation_cache_dir)
    folder = directory()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:   # a read-only home: compile every time, as without the cache
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return folder
