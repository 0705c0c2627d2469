"""The jitted, vmapped programs of a group: init, epoch and test over a unit's (streams × points) grid.

The epoch is ``vmap`` over streams of ``vmap`` over points of :func:`jaxmlp.train.train_epoch`; in the
inner vmap the stream (key, indices) is not batched, so the minibatch gather, its float conversion and the
dropout draws are computed once per stream and the first layer becomes one wide matmul for all members.

Hyperparameters reach the program as (s, h) arrays, one per name the group's model, optimizer or loss
reads (found by tracing them once, :func:`inspect_group`); a name that is 0 for every member goes in as a
Python 0.0 instead, so that its term can be left out of the program (:func:`jaxmlp.optim.is_zero`).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import models, train
from jaxmlp.config import Group, SweepConfig
from jaxmlp.data import Dataset
from jaxmlp.errors import UsageError
from jaxmlp.layout import Unit

CPU_BLOCK_BYTES = 4 << 20   # about a core's share of L2+L3 here
DRAW_BYTES = 256 << 20      # the most a unit's shared dropout draws for an epoch may take


class _Reads(Mapping):
    """A member's values that remember which names were read (to find what a program takes)."""

    def __init__(self, values: Mapping[str, Any]):
        self.values, self.read = dict(values), set()

    def __getitem__(self, name: str) -> Any:
        if name not in self.values:
            raise UsageError(f"the model, optimizer or loss reads hp[{name!r}], which is neither given nor a "
                             f"built-in hyperparameter; give its values in hparams={{{name!r}: [...]}}")
        self.read.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class GroupInfo:
    """What tracing a group's program once tells: the names it reads, the constant zeros, the sizes."""

    names: tuple[str, ...]           # hyperparameters passed as (s, h) arrays
    zeros: tuple[str, ...]           # hyperparameters that are 0 for every member (passed as 0.0)
    recorded: tuple[str, ...]        # names read by the program (recorded in results)
    n_params: int
    member_bytes: int


def setup_for(config: SweepConfig, group: Group, ds: Dataset, n_train: int) -> train.Setup:
    """The static part of a group's member program."""
    st = group.static
    spec = models.Spec(tuple(st["hidden"]), st["activation"], st["batch_norm"], ds.num_classes)
    steps = config.epochs * train.steps_per_epoch(n_train, st["batch_size"])
    return train.Setup(models.Factory(st["model"], spec), st["optimizer"], ds.input_shape,
                       batch_size=st["batch_size"], patience=config.patience, lr_schedule=config.lr_schedule,
                       total_steps=steps, loss=config.loss)


def _values(group: Group) -> dict[str, list[float]]:
    """Each hyperparameter's value for every point of the group (defaults where not given)."""
    defaults, points = group.defaults(), group.hparams
    names = list(defaults) + [n for n in (points[0] if points else {}) if n not in defaults]
    return {n: [p.get(n, defaults.get(n)) for p in points] for n in names}


# What tracing told, by everything it depends on: a search's batches (and a script's sweeps of one kind of
# model) would each trace the same member again (0.04-0.14 s here).
_INFOS: "OrderedDict[tuple, GroupInfo]" = OrderedDict()


def inspect_group(group: Group, setup: train.Setup, num_classes: int) -> GroupInfo:
    """Trace one member's init and loss abstractly: which names are read, whether the model's output
    fits the classes, and the member's size. Refuses a given hyperparameter that nothing reads."""
    values = _values(group)
    zeros = tuple(n for n, v in values.items() if all(x == 0 for x in v))
    key = (setup, tuple(values), zeros, num_classes, tuple(group.config.hp_names()))
    try:
        info = _INFOS.get(key)
    except TypeError:   # a user's factory or loss that cannot be hashed: traced each time
        return _inspect(group, setup, num_classes, values, zeros)
    if info is None:
        info = _INFOS[key] = _inspect(group, setup, num_classes, values, zeros)
        while len(_INFOS) > _KEEP_PROGRAMS:
            _INFOS.popitem(last=False)
    return info


def _inspect(group: Group, setup: train.Setup, num_classes: int, values: dict[str, list[float]],
             zeros: tuple[str, ...]) -> GroupInfo:
    hp = _Reads({n: 0.0 if n in zeros else jnp.float32(v[0]) for n, v in values.items()})
    try:
        state = jax.eval_shape(lambda: train.init(setup, hp, train.member_key(jnp.uint32(0))))
        logits = jax.eval_shape(lambda v: setup.model(hp).apply(v, jnp.zeros((2, *setup.input_shape)), train=False),
                                state.variables)
    except UsageError:
        raise
    except Exception as e:   # a user's module that cannot run on these inputs: say so on one line
        raise UsageError(f"the model of group {group.name()} fails on inputs of shape {setup.input_shape}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if logits.shape != (2, num_classes):
        raise UsageError(f"the model returns outputs of shape {logits.shape[1:]} per sample, but the data has "
                         f"{num_classes} classes; make its last layer output {num_classes} logits")
    jax.eval_shape(lambda p: train._objective(setup, hp, p, jnp.zeros((2, num_classes)), jnp.zeros(2, jnp.int32),
                                              jnp.ones(2)), state.variables["params"])
    unused = [n for n in group.config.hp_names() if n not in hp.read]
    if unused:
        raise UsageError(f"hyperparameter {', '.join(unused)} is not read by the model, optimizer or loss of "
                         f"group {group.name()}; remove it, or read it as hp[{unused[0]!r}] in a factory")
    recorded = tuple(n for n in values if n in hp.read)
    state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state))
    n_params = sum(a.size for a in jax.tree.leaves(state.variables["params"]))
    return GroupInfo(tuple(n for n in recorded if n not in zeros), zeros, recorded, n_params,
                     _member_bytes(setup, hp, state, state_bytes, n_params))


def _member_bytes(setup: train.Setup, hp: Mapping[str, Any], state: Any, state_bytes: int, n_params: int) -> int:
    """What one member needs while training: its state (exact, from ``jax.eval_shape``), gradients and an
    update, and the activations of a training or evaluation batch (every module's output, from the model's
    own intermediates, kept for the backward pass with a few working copies)."""
    batch = max(setup.batch_size, setup.eval_batch)
    _, cols = jax.eval_shape(lambda v: setup.model(hp).apply(
        v, jnp.zeros((batch, *setup.input_shape)), train=False, capture_intermediates=True,
        mutable=["intermediates"]), state.variables)
    activations = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(cols.get("intermediates", {})))
    return state_bytes + 2 * 4 * n_params + 4 * activations


def member_block(config: SweepConfig, info: GroupInfo) -> int:
    """Members vmapped together inside a stream (the rest are walked one block after another).

    Accelerators want every member at once. A CPU is fastest when a block's parameters, gradients and
    optimizer moments stay in its cache (measured: 22 members of 784-256-128-10 vmapped at once ran at
    7.5 s an epoch against 5.1 s in blocks of one, on 2 devices); tiny models take all at once.
    """
    if config.member_block is not None:
        return config.member_block
    if jax.local_devices()[0].platform != "cpu":
        return 1 << 30
    return max(1, CPU_BLOCK_BYTES // (5 * 4 * info.n_params))


def even_block(n: int, limit: int) -> int:
    """The members per block when `n` members are walked in blocks of about `limit` (up to a quarter
    more): blocks of one size, the fewest that fit, when they hold at least half the limit; else the limit,
    with a smaller last block. ``lax.map`` traces and compiles its function a second time for such a last
    block (32 members in blocks of 31 took two programs' compile time, and a one-member step every step)."""
    cap = limit + limit // 4
    for blocks in range(-(-n // cap), n + 1):
        size = n // blocks
        if size * 2 < limit:
            break
        if n % blocks == 0:
            return size
    return min(limit, n)


def _grid_map(fn: Callable, member_args: int, shared_args: int, block: int, split: int,
              prelude: Callable | None = None) -> Callable:
    """Map `fn` (one member) over a unit's (s, h) grid.

    The first `member_args` arguments carry both axes, the next (the stream) only the stream axis, the
    last `shared_args` none. Streams are vmapped. The h members of a stream are split into `split`
    vmapped parts (one per device when h is sharded), each walked by ``lax.map`` in vmapped blocks of
    `block` members: on a CPU a block whose weights and optimizer moments fit in cache beats one wide vmap.
    `prelude`, given the stream's member arguments and its stream and shared arguments, makes extra
    arguments once per stream, passed to `fn` after them (work the members of a stream share).
    """
    def over_h(*args):
        per_member, rest = args[:member_args], args[member_args:]
        if prelude is not None:
            rest = (*rest, *prelude(per_member, *rest))
        h = jax.tree.leaves(per_member)[0].shape[0]
        one = lambda m: fn(*m, *rest)
        # A map of one element is left out (and lax.map of one block): each level is traced over every
        # operation of the member's program (measured: ~0.1 s less tracing per level left out).
        walk = (jax.vmap(one) if block >= h // split else
                lambda part: jax.lax.map(one, part, batch_size=block))
        parts = jax.tree.map(lambda a: a.reshape(split, h // split, *a.shape[1:]), per_member)
        out = jax.vmap(walk)(parts) if split > 1 else _unit_axis(walk, parts)
        return jax.tree.map(lambda a: a.reshape(h, *a.shape[2:]), out)

    over_streams = jax.vmap(over_h, in_axes=(0,) * member_args + (0,) + (None,) * shared_args)

    def grid(*args):
        if jax.tree.leaves(args[0])[0].shape[0] > 1:
            return over_streams(*args)
        return _unit_axis(lambda a: over_h(*a, *args[member_args + 1:]), args[:member_args + 1])

    return grid


def _unit_axis(fn: Callable, args: Any) -> Any:
    """``jax.vmap(fn)(args)`` for arguments whose leading axis has length 1, without the vmap."""
    return jax.tree.map(lambda a: a[None], fn(jax.tree.map(lambda a: a[0], args)))


@dataclass
class GroupProgram:
    """The compiled functions of one group (shared by its units, which all have one shape).

    The epoch and test programs are compiled ahead of time: in a background thread while the sweep does
    other work (:meth:`compile_ahead`: XLA's compile releases the GIL, so it overlaps with initialising the
    members, or with training another shape), or on first use."""

    setup: train.Setup
    info: GroupInfo
    init: Callable
    epoch: Callable
    test: Callable
    compiled_epoch: Callable | None = None   # the epoch, compiled ahead of time
    compiled_test: Callable | None = None
    compile_s: float = 0.0                   # seconds a caller waited for the epoch to compile
    _ahead: dict[str, Future] = field(default_factory=dict)
    _guessed: bool = False                   # the epoch was compiled ahead and has not run yet

    def needs_compile(self) -> bool:
        """Whether the epoch is neither compiled nor compiling."""
        return self.compiled_epoch is None and "epoch" not in self._ahead

    def compile_ahead(self, epoch_args: tuple, test_args: tuple | None = None) -> None:
        """Start compiling the epoch (then the test) for arguments like these (arrays or
        ``jax.ShapeDtypeStruct`` with their shardings) in the background; :meth:`compiled` collects it."""
        if self.needs_compile():
            # Traced and lowered here: Python work that would contend for the GIL with the caller's next
            # steps anyway, and the epoch is what the sweep waits for first; XLA's compile goes behind.
            try:
                lowered = self.epoch.lower(*epoch_args)
            except Exception:   # compiled on first use instead, where the error is raised as usual
                lowered = None
            if lowered is not None:
                self._ahead["epoch"] = _worker().submit(lowered.compile)
        if test_args is not None and self.compiled_test is None and "test" not in self._ahead:
            self._ahead["test"] = _worker().submit(lambda: self.test.lower(*test_args).compile())

    def compiled(self, args: tuple) -> Callable:
        """The compiled epoch for `args` (waiting for a background compile, or compiling now)."""
        if self.compiled_epoch is None:
            t0 = time.perf_counter()
            self.compiled_epoch = _collect(self._ahead.pop("epoch", None))
            self._guessed = self.compiled_epoch is not None
            if self.compiled_epoch is None:
                self.compiled_epoch = self.epoch.lower(*args).compile()
            self.compile_s += time.perf_counter() - t0
        return self.compiled_epoch

    def run_epoch(self, args: tuple) -> Any:
        """Train one epoch: the compiled epoch on `args`."""
        fn = self.compiled(args)
        if not self._guessed:
            return fn(*args)
        self._guessed = False
        try:
            return fn(*args)
        except (TypeError, ValueError):   # compiled ahead for arguments unlike these (raised before running)
            self.compiled_epoch = None
            return self.compiled(args)(*args)

    def run_test(self, args: tuple) -> Any:
        """Evaluate: the test program compiled ahead when it takes `args`, else the jitted one."""
        if self.compiled_test is None:
            self.compiled_test = _collect(self._ahead.pop("test", None)) or self.test
        try:
            return self.compiled_test(*args)
        except (TypeError, ValueError):
            if self.compiled_test is self.test:
                raise
            self.compiled_test = self.test
            return self.test(*args)


_WORKER: ThreadPoolExecutor | None = None


def _worker() -> ThreadPoolExecutor:
    """One background thread for compiling ahead (one compile at a time: the sweep trains meanwhile)."""
    global _WORKER
    if _WORKER is None:
        _WORKER = ThreadPoolExecutor(1, thread_name_prefix="jaxmlp-compile")
    return _WORKER


def _collect(future: Future | None) -> Callable | None:
    """A background compile's program, or None when there was none or it failed (compiled again in the
    caller's thread, where a failure raises as it would have without compiling ahead)."""
    if future is None:
        return None
    try:
        return future.result()
    except Exception:
        return None


# Programs built in this process, by everything they depend on: a search that trains batch after batch of
# new points (or reruns a sweep) reuses the compiled epoch instead of compiling it again.
_PROGRAMS: "OrderedDict[tuple, GroupProgram]" = OrderedDict()
_KEEP_PROGRAMS = 16


def build_program(config: SweepConfig, setup: train.Setup, info: GroupInfo, unit: Unit, n_devices: int,
                  n_train: int) -> GroupProgram:
    """The jitted init, epoch and test functions for the units of a group (which share one shape); the
    same objects, compiled epoch included, when this process built them before."""
    key = (setup, info, unit.shape, unit.shard_axis, n_devices, n_train, member_block(config, info),
           jax.local_devices()[0].platform)
    try:
        hash(key)
    except TypeError:   # a user's factory or loss that cannot be hashed: build afresh
        return _build_program(config, setup, info, unit, n_devices, n_train)
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    _PROGRAMS[key] = program = _build_program(config, setup, info, unit, n_devices, n_train)
    while len(_PROGRAMS) > _KEEP_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    return program


def _build_program(config: SweepConfig, setup: train.Setup, info: GroupInfo, unit: Unit, n_devices: int,
                   n_train: int) -> GroupProgram:
    split = n_devices if unit.shard_axis == 1 else 1
    block = member_block(config, info)
    if config.member_block is None:   # chosen here: blocks of one size (a given size is kept as given)
        block = even_block(unit.shape[1] // split, block)
    grid = lambda fn, member_args, shared_args, prelude=None: _grid_map(fn, member_args, shared_args, block,
                                                                       split, prelude)
    full = lambda hp: {**{n: 0.0 for n in info.zeros}, **hp}
    # When a stream's members are walked in several blocks, each block would make the stream's dropout
    # draws again (threefry: ~7 % of an MLP epoch here): make them once per stream and epoch, if small.
    shared = unit.shape[1] // split > block
    if shared:
        draw_bytes = unit.shape[0] * _draw_bytes(setup, info, n_train)
        shared = 0 < draw_bytes <= DRAW_BYTES

    def draws(per_member, stream, data, epoch):
        first = jax.tree.map(lambda a: a[0], per_member[1])
        return (train.epoch_draws(setup, full(first), stream, epoch),)

    def epoch(state, hp, stream, data, epoch, *draws):
        return train.train_epoch(setup, state, full(hp), stream, data, epoch, *draws)

    def test(state, hp, stream, test_data):
        variables = train.final_variables(setup, state)
        return train.evaluate(setup, full(hp), variables, test_data, jnp.arange(test_data["y"].shape[0]))

    options = compiler_options()
    return GroupProgram(
        setup, info,
        init=jax.jit(grid(lambda hp, stream: train.init(setup, full(hp), stream.key), 1, 0),
                     compiler_options=options),
        epoch=jax.jit(grid(epoch, 2, 2, draws if shared else None), donate_argnums=(0,), compiler_options=options),
        test=jax.jit(grid(test, 2, 1), compiler_options=options),
    )


# LLVM's optimisation level for the programs' CPU code. On a CPU the matrix products run in library
# kernels and the fused elementwise loops vectorise at level 1 too, so the highest level (XLA's default)
# buys no speed here and costs compile time (measured, 32 members of 784-8-16-10 and 8 of 784-256-128-10:
# the same numbers bit for bit, the same epoch time within 3 %, and 30-60 % less compile CPU time:
# epoch 3.3 -> 2.6 s, init 1.7 -> 0.7 s for the tiny MLP). Accelerators keep XLA's defaults.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def compiler_options() -> dict[str, Any] | None:
    """XLA options for this process's sweep programs: :data:`CPU_COMPILER_OPTIONS` on a CPU."""
    return dict(CPU_COMPILER_OPTIONS) if jax.local_devices()[0].platform == "cpu" else None


def _draw_bytes(setup: train.Setup, info: GroupInfo, n_train: int) -> int:
    """The size of one stream's dropout draws for an epoch (0 when the model draws none)."""
    hp = {n: 0.0 if n in info.zeros else jnp.float32(0.5) for n in info.recorded}
    stream = train.Stream(train.member_key(jnp.uint32(0)), jnp.zeros(n_train, jnp.int32), jnp.zeros(1, jnp.int32))
    try:
        shapes = jax.eval_shape(lambda: train.epoch_draws(setup, _Reads(hp), stream, jnp.int32(0)))
    except Exception:   # a model whose draws cannot be made ahead: make them step by step
        return 0
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(shapes))


def unit_hparams(group: Group, info: GroupInfo, unit: Unit,
                 overrides: Mapping[int, Mapping[str, float]] | None = None) -> dict[str, np.ndarray]:
    """The unit's (s, h) float32 array of each hyperparameter the program takes: each member's point, or
    the values a schedule set for it since (`overrides`, by global member index: population-based training)."""
    values = _values(group)
    out = {n: np.asarray(values[n], np.float32)[unit.points] for n in info.names}
    for a, b in zip(*np.nonzero(unit.real)):
        for n, v in (overrides or {}).get(int(unit.index[a, b]), {}).items():
            if n not in out:
                raise UsageError(f"hyperparameter {n!r} cannot change during training in group {group.name()}: it "
                                 "is 0 for every member (its term is left out of the program) or not read; give "
                                 "some member a nonzero value")
            out[n][a, b] = v
    return out
