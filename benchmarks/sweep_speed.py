"""Sweep speed: the vmapped sweep against a loop over members, against the machine's matmul peak.

Measured in one process and one run (shared machines are noisy: compare only figures from one run):
- for 22 members, batch 128, Adam, models "tiny" (784-8-16-10) and "mlp" (784-256-128-10): seconds per
  epoch of the vmapped sweep after compilation, member-samples/s, achieved FLOP/s (6 × weights ×
  samples), compile time; the same 22 members trained one after another with the same code (a Python
  loop over the single-member jitted epoch);
- the float32 matmul peak (a large jitted matmul): its best of 10 short runs ("burst"), and its sustained
  rate in a window as long as an epoch right after each timed epoch of the default layout. "of peak" is
  the median over epochs of (the epoch's FLOP/s / the next window's), so the machine's drift cancels;
  "of burst" divides by the burst peak;
- a scaling curve: time per epoch for 1, 2, 4, … members of the tiny model (also drawn as a PNG);
- optionally (--big) a 1,024-member chunked tiny sweep, with its peak memory;
- optionally (--checkpoint) the time a 22-member tiny sweep (batch 32, 6 epochs) takes with a checkpoint
  every epoch against none.
Writes benchmarks/results/<machine>.json (and scaling_<machine>.png).

    python benchmarks/sweep_speed.py [--epochs 3] [--big] [--checkpoint] [--machine NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement (median taken)")
    p.add_argument("--members", type=int, default=22)
    p.add_argument("--scaling-max", type=int, default=256)
    p.add_argument("--big", action="store_true", help="also run a 1,024-member chunked tiny sweep")
    p.add_argument("--checkpoint", action="store_true", help="also time checkpointing every epoch")
    p.add_argument("--machine", help="name for the results file (default: from the device)")
    p.add_argument("--skip-loop", action="store_true")
    return p.parse_args()


ARGS = _args()
from jaxmlp.hostdevices import use_one_device_per_core  # noqa: E402  (imports no jax)

use_one_device_per_core()   # as the jaxmlp command does; the sweeps below compare 1 device with all

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxmlp import members  # noqa: E402
from jaxmlp.config import SweepConfig  # noqa: E402

MODELS = {"tiny": (8, 16), "mlp": (256, 128)}


def weights(hidden) -> int:
    widths = [784, *hidden, 10]
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def data_dir() -> str | None:
    """Real Fashion-MNIST where installed; else synthetic data of the same shape in a temp folder."""
    try:
        from jaxmlp import data

        data.load("fashion_mnist")
        return None
    except Exception:  # noqa: BLE001 - any failure means: fall back to synthetic data
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from synthetic import write_dataset

        folder = Path(tempfile.mkdtemp()) / "synthetic"
        write_dataset(folder, 60000, 10000)
        print(f"(real Fashion-MNIST not found: synthetic data of the same shape in {folder})")
        return str(folder)


def _matmul(d: int, n: int):
    """A jitted float32 matmul of d (n, n) pairs sharded over the first d devices, and its inputs."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    shard = NamedSharding(Mesh(np.array(jax.local_devices()[:d]), ("d",)), P("d"))
    a = jax.device_put(jax.random.normal(jax.random.key(0), (d, n, n), jnp.float32), shard)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (d, n, n), jnp.float32), shard)
    f = jax.jit(lambda a, b: jnp.einsum("bij,bjk->bik", a, b))
    f(a, b).block_until_ready()
    return f, a, b


def matmul_peak(n: int = 2048, reps: int = 10) -> tuple[float, int]:
    """float32 FLOP/s of large jitted matmuls, best of `reps` short runs, and the device count that gave
    it (one device with all threads, or all devices at once)."""
    best, best_d = 0.0, 1
    for d in sorted({1, len(jax.local_devices())}):
        f, a, b = _matmul(d, n)
        for _ in range(reps):
            t = time.perf_counter()
            f(a, b).block_until_ready()
            rate = 2 * d * n**3 / (time.perf_counter() - t)
            best, best_d = max((best, best_d), (rate, d))
    return best, best_d


def sustained_matmul(d: int, seconds: float, n: int = 2048) -> Callable[[], float]:
    """A function that runs the peak's matmul back to back for `seconds` and returns its FLOP/s over that
    window: the machine's speed right then, to pair with a sweep epoch timed just before (a shared VM's
    speed drifts by ±10 % within minutes, and a best-of-short-runs peak catches its quietest moments)."""
    f, a, b = _matmul(d, n)

    def window() -> float:
        t0, calls = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            f(a, b).block_until_ready()
            calls += 1
        return calls * 2 * d * n**3 / (time.perf_counter() - t0)

    return window


def time_sweep(config: SweepConfig, epochs: int, after_epoch: Callable[[], float] | None = None) -> dict:
    """Prepare, compile, and time `epochs` epochs of a sweep; seconds per epoch is the median. With
    `after_epoch`, it is called after each timed epoch and its values are returned as ``paired``."""
    prep = members.prepare(config)
    state = members.initial_state(prep)
    members.run_epoch(prep, state)            # compiles (timed inside), then one warm-up epoch
    times, paired = [], []
    for _ in range(epochs):
        t = time.perf_counter()
        members.run_epoch(prep, state)
        times.append(time.perf_counter() - t)
        if after_epoch is not None:
            paired.append(after_epoch())
    n_train = next(iter(prep.data.values())).n_train
    return {"epoch_s": statistics.median(times), "epoch_times": times, "paired": paired,
            "compile_s": sum(p.compile_s for p in prep.programs), "n_train": n_train, "units": len(prep.units)}


def base_config(hidden, dd, **kw) -> SweepConfig:
    return SweepConfig(hidden=[hidden], batch_size=[128], optimizer=["adam"], data_dir=dd,
                       epochs=10_000, **kw)


def main() -> None:
    dd = data_dir()
    devices = jax.local_devices()
    machine = ARGS.machine or f"{devices[0].platform}-{platform.machine()}-{os.cpu_count()}cores"
    peak, peak_devices = matmul_peak()
    print(f"devices: {len(devices)} x {devices[0].device_kind}; float32 matmul peak {peak / 1e9:.1f} GFLOP/s "
          f"(best of 10 short runs on {peak_devices} device(s))")
    rates = list(np.round(np.linspace(0.01, 0.99, ARGS.members), 4))
    out = {"machine": machine, "devices": [str(d) for d in devices], "matmul_peak_flops": peak,
           "matmul_peak_devices": peak_devices, "jax": jax.__version__, "members": ARGS.members, "models": {}}
    rows = []
    for name, hidden in MODELS.items():
        rec = {}
        n_dev = len(devices)
        for label, dev in (("one_device", 1), ("all_devices", None)) if n_dev > 1 else (("all_devices", None),):
            # The default layout (all devices) last, with a matmul window of the epoch's length after each
            # timed epoch: its fraction of peak is the median of the epoch-by-window ratios.
            window = sustained_matmul(peak_devices, rec.get("sweep_epoch_s_one_device", 1.0)) if dev is None else None
            sweep = time_sweep(base_config(hidden, dd, dropout=rates, devices=dev), ARGS.epochs, window)
            rec[f"sweep_epoch_s_{label}"] = sweep["epoch_s"]
            rec.setdefault("compile_s", sweep["compile_s"])
        epoch_s = rec["sweep_epoch_s_all_devices"]
        samples = sweep["n_train"] * ARGS.members
        flops = 6 * weights(hidden) * samples
        windows = sweep["paired"]
        paired = [flops / t / w for t, w in zip(sweep["epoch_times"], windows)]
        rec.update({"sweep_epoch_s": epoch_s, "member_samples_per_s": samples / epoch_s,
                    "flops_per_s": flops / epoch_s, "fraction_of_burst_peak": flops / epoch_s / peak,
                    "matmul_windows_flops": windows,
                    "fraction_of_peak": statistics.median(paired)})
        if not ARGS.skip_loop:
            # The loop: one member's compiled epoch (one device, both threads), called once per member.
            single = time_sweep(base_config(hidden, dd, dropout=[rates[0]], devices=1), ARGS.epochs)
            rec["single_member_epoch_s"] = single["epoch_s"]
            rec["loop_epoch_s"] = single["epoch_s"] * ARGS.members
            rec["sweep_over_loop"] = rec["loop_epoch_s"] / epoch_s
        out["models"][name] = rec
        rows.append((name, rec))
    print(f"\n{'model':6} {'sweep s/epoch':>13} {'1-device':>8} {'loop s/epoch':>12} {'speed-up':>8} "
          f"{'M samples/s':>11} {'GFLOP/s':>8} {'of peak':>7} {'of burst':>8} {'compile s':>9} "
          f"{'1 member s/epoch':>16}")
    for name, r in rows:
        print(f"{name:6} {r['sweep_epoch_s']:13.3f} {r.get('sweep_epoch_s_one_device', float('nan')):8.3f} "
              f"{r.get('loop_epoch_s', float('nan')):12.3f} {r.get('sweep_over_loop', float('nan')):7.1f}x "
              f"{r['member_samples_per_s'] / 1e6:11.2f} {r['flops_per_s'] / 1e9:8.1f} {r['fraction_of_peak']:7.2f} "
              f"{r['fraction_of_burst_peak']:8.2f} "
              f"{r['compile_s']:9.2f} {r.get('single_member_epoch_s', float('nan')):16.3f}")
    print("(epochs include the validation pass; 'sweep' is the default layout: members sharded over all "
          "devices; '1-device' the same sweep on one device with all threads)")

    curve = []
    m = 1
    while m <= ARGS.scaling_max:
        r = time_sweep(base_config(MODELS["tiny"], dd, dropout=list(np.linspace(0.0, 0.5, m))), 1)
        curve.append({"members": m, "epoch_s": r["epoch_s"]})
        print(f"scaling: {m:4d} tiny members  {r['epoch_s']:.3f} s/epoch  "
              f"{m * r['n_train'] / r['epoch_s'] / 1e6:.2f} M member-samples/s")
        m *= 2
    out["scaling_tiny"] = curve

    if ARGS.big:
        cfg = base_config(MODELS["tiny"], dd, dropout=list(np.round(np.linspace(0.0, 0.9, 32), 4)),
                          seed=list(range(32)), chunk_size=256)
        t = time.perf_counter()
        r = time_sweep(cfg, 1)
        out["big_1024"] = {"members": 1024, "chunk_size": 256, "units": r["units"], "epoch_s": r["epoch_s"],
                           "wall_s_prepare_compile_2_epochs": time.perf_counter() - t}
        print(f"1,024 tiny members in {r['units']} chunks: {r['epoch_s']:.2f} s/epoch")

    if ARGS.checkpoint:
        # The sweep of the checkpoint issue: 22 tiny members, 6 epochs, jaxmlp's default batch size (32);
        # with and without a checkpoint every epoch, interleaved five times, best of each (noisy machine).
        # Also, within each run with checkpoints, the time saves held training up over the epochs' time.
        from jaxmlp.run import run_sweep

        timing = {"without": [], "with": []}
        saves, shares = [], []
        for _ in range(5):
            for label in timing:
                cfg = SweepConfig(hidden=[MODELS["tiny"]], dropout=rates, data_dir=dd, epochs=6)
                ck = tempfile.mkdtemp() if label == "with" else None
                res = run_sweep(cfg, None, progress=False, checkpoint_dir=ck, plots=False)
                timing[label].append(res.timing["train_s"] + res.timing["checkpoint_s"])
                if ck:
                    saves.append(res.timing["checkpoint_s"] / 6)
                    shares.append(res.timing["checkpoint_s"] / res.timing["train_s"])
        best = {k: min(v) for k, v in timing.items()}
        out["checkpoint_every_epoch"] = {"train_s_without": best["without"], "train_s_with": best["with"],
                                         "overhead": best["with"] / best["without"] - 1, "runs": timing,
                                         "median_save_s": statistics.median(saves),
                                         "median_save_share": statistics.median(shares)}
        print(f"checkpoint every epoch (22 tiny members, batch 32, 6 epochs): {best['with']:.2f} s vs "
              f"{best['without']:.2f} s without ({100 * (best['with'] / best['without'] - 1):+.1f} %, best of 5 "
              f"each); {1000 * statistics.median(saves):.0f} ms a save, "
              f"{100 * statistics.median(shares):.1f} % of the training time of its own run (median)")

    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory (RSS) {out['peak_rss_gib']:.2f} GiB")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{machine}.json"
    path.write_text(json.dumps(out, indent=1))
    _plot_scaling(curve, RESULTS / f"scaling_{machine}.png", machine)
    print(f"wrote {path}")


def _plot_scaling(curve, path: Path, machine: str) -> None:
    try:
        import matplotlib
    except ImportError:   # a bare accelerator machine: the figures are in the JSON all the same
        print("(matplotlib not installed: no scaling plot)")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = [c["members"] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.loglog(ms, [c["epoch_s"] for c in curve], "o-", color="#0072B2", label="vmapped sweep")
    ax.loglog(ms, [curve[0]["epoch_s"] * m for m in ms], "--", color="#D55E00", label="loop (1 member × M)")
    ax.set_xlabel("members trained together")
    ax.set_ylabel("seconds per epoch (Fashion-MNIST, 54k samples)")
    ax.set_title(f"784-8-16-10 sweep scaling on {machine}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
