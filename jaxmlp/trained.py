"""Trained members: their final variables in the run directory, and :func:`load` / :meth:`Trained.predict`.

At the end of a sweep ``variables.npz`` in the run directory holds every member's final variables (the
best epoch's with early stopping), keyed ``<member>/<path>``, and ``results.json`` records its sha256.
Why a plain ``.npz`` and not Orbax: it is written once, by process 0 alone, from arrays already gathered
to the host (an Orbax save in a multi-process run needs every process to join), and read back without
knowing the optimizer, whose state the resumable checkpoints hold as well.

:func:`load` rebuilds the member's model from the run's record: a registered model by name, a user's
model from the same factory passed as ``model=`` (a function cannot be recorded in a file). The variables
are checked against the model's own shapes, so a wrong factory is refused instead of silently mispredicting.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxmlp import models, results, train
from jaxmlp.errors import UsageError

FILE = "variables.npz"


def write_variables(out: Path, variables: list[Any]) -> str:
    """Write every member's variables to ``out/variables.npz`` (atomically); returns the file's sha256."""
    arrays = {f"{i}/{'/'.join(path)}": np.asarray(v)
              for i, tree in enumerate(variables) for path, v in flatten_dict(tree).items()}
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{FILE}.")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    digest = _sha256(Path(tmp))
    os.replace(tmp, out / FILE)
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Trained:
    """One trained member: its model, variables and settings, ready to predict."""

    model: nn.Module
    variables: dict[str, Any]
    hparams: dict[str, Any]
    index: int

    def logits(self, x: Any, batch_size: int = 1000) -> np.ndarray:
        """The model's logits for inputs `x` (uint8 images are scaled to [0, 1], as in training)."""
        x = np.asarray(x)
        apply = jax.jit(lambda v, b: self.model.apply(v, train.to_float(b), train=False))
        return np.concatenate([np.asarray(apply(self.variables, x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0,))

    def predict(self, x: Any, batch_size: int = 1000) -> np.ndarray:
        """Predicted class of each sample of `x`."""
        return self.logits(x, batch_size).argmax(-1)

    def accuracy(self, x: Any, y: Any) -> float:
        """The share of samples of `x` whose predicted class is `y`."""
        return float((self.predict(x) == np.asarray(y)).mean())


def load(run_dir: str | os.PathLike, member: int | None = None,
         model: Callable[[Mapping[str, Any]], nn.Module] | None = None) -> Trained:
    """A trained member of a run directory (default: the best on validation), ready to ``predict``.

    `model`: the factory ``hp -> module`` the sweep was given, for a run of a user's model (a registered
    model is rebuilt by name)."""
    run_dir = Path(run_dir)
    res = results.Results.read(run_dir)
    if member is None:
        member = res.best()["index"]
    if not 0 <= member < len(res.members):
        raise UsageError(f"member {member} is not in {run_dir}: it has members 0..{len(res.members) - 1}")
    path = run_dir / FILE
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no {FILE} (written at the end of a sweep); rerun the sweep to finish it")
    recorded = res.config.get("variables_sha256")
    if recorded and _sha256(path) != recorded:
        raise UsageError(f"{path} does not match the checksum in results.json: the file is damaged; rerun the sweep")
    try:
        with np.load(path, allow_pickle=False) as z:
            prefix = f"{member}/"
            flat = {tuple(k[len(prefix):].split("/")): z[k] for k in z.files if k.startswith(prefix)}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UsageError(f"cannot read {path} ({e}); the file is damaged: rerun the sweep") from None
    variables = unflatten_dict(flat)
    hparams = res.members[member]["hparams"]
    module = _model(res, hparams, model)
    data = res.config.get("data", {}).get(hparams.get("dataset"), {})
    shape = tuple(data.get("input_shape") or ())
    if shape:
        _check_shapes(module, variables, shape, model is not None)
    return Trained(module, variables, hparams, member)


def _model(res: results.Results, hparams: dict[str, Any], factory: Callable | None) -> nn.Module:
    values = {k: jnp.float32(v) for k, v in hparams.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    name = hparams.get("model", "mlp")
    if factory is not None:
        return factory(values)
    if str(name).startswith("user:"):
        raise UsageError(f"this run trained a user model ({name}); pass the same factory: "
                         "jaxmlp.load(run_dir, member, model=...)")
    models.check_name(name)
    data = res.config.get("data", {}).get(hparams.get("dataset"), {})
    hidden = tuple(int(w) for w in str(hparams.get("hidden", "256,128")).split(","))
    spec = models.Spec(hidden, hparams.get("activation", "relu"), bool(hparams.get("batch_norm", False)),
                       int(data.get("num_classes", 10)))
    values.setdefault("dropout", jnp.float32(0.0))
    values.setdefault("bn_momentum", jnp.float32(0.99))
    return models.build(name, spec, values)


def _check_shapes(module: nn.Module, variables: dict[str, Any], input_shape: tuple[int, ...], user: bool) -> None:
    want = jax.eval_shape(lambda: models.init(module, jax.random.key(0), input_shape))
    got = {k: tuple(v.shape) for k, v in flatten_dict(variables).items()}
    need = {k: tuple(v.shape) for k, v in flatten_dict(dict(want)).items()}
    if got != need:
        diff = sorted(set(got.items()) ^ set(need.items()))[:1]
        who = "the model given" if user else "the recorded model"
        raise UsageError(f"{who} does not match the saved variables (first difference: {'/'.join(diff[0][0])} "
                         f"{diff[0][1]}); pass the factory the sweep was trained with")
