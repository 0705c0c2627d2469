"""The persistent compilation cache: where it goes, how it is turned off, and that a new process uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jaxmlp import compile_cache

SCRIPT = textwrap.dedent("""
    import json, sys
    import jaxmlp
    config = jaxmlp.SweepConfig(data_dir=sys.argv[1], hidden=[(8,)], batch_size=[50], epochs=1, dropout=[0.0, 0.2])
    res = jaxmlp.sweep(config, progress=False)
    print(json.dumps({"acc": [m["val"]["accuracy"] for m in res.members]}))
""")


def test_the_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.directory() is None
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "x"))
    assert compile_cache.directory() == tmp_path / "x"
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.directory() == tmp_path / "jaxmlp" / "xla"


def test_a_second_process_loads_what_the_first_compiled(synthetic_dir, tmp_path):
    env = {**os.environ, compile_cache.ENV: str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def run() -> dict:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(synthetic_dir)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first = run()
    kept = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert kept                                          # the epoch program was kept on disk
    second = run()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == kept   # loaded, nothing compiled anew
    assert second["acc"] == first["acc"]                 # the same numbers from the loaded program
