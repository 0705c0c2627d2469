"""A user's own model, data and hyperparameter, swept by jaxmlp as one compiled job.

The model is a residual MLP with layer norm (written here, not built into jaxmlp); the data are 3-class
2-D spirals held as numpy arrays (not images, not 10 classes); the sweep varies ``residual_scale`` (a
hyperparameter jaxmlp does not know: the model reads it) and the dropout rate, over two seeds. Every
member trains at once; the run directory gets results, plots and the members' final variables, and the
best member is loaded back to predict.

    python -m examples.residual_mlp [--out runs/residual_mlp] [--epochs 30] [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

import jaxmlp  # first: one CPU device per core, as the jaxmlp command (jax is imported after it)

import flax.linen as nn  # noqa: E402
import numpy as np  # noqa: E402

from jaxmlp.nn import Dropout  # noqa: E402

# A row in the hyperparameter table gives the new setting bounds and a label in plots and tables.
jaxmlp.declare(jaxmlp.HParam("residual_scale", 1.0, low=0.0, target="model", label="residual scale",
                             help="how much each residual block adds to its input"))


class ResidualMLP(nn.Module):
    """Dense stem, `depth` pre-norm residual blocks (LayerNorm → Dense → GELU → dropout → Dense), head."""

    width: int = 64
    depth: int = 3
    num_classes: int = 3
    dropout: Any = 0.0          # may be a traced array: jaxmlp.nn.Dropout takes one
    residual_scale: Any = 1.0   # a traced array in the sweep: one value per member

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(self.width)(x.reshape(x.shape[0], -1))
        for _ in range(self.depth):
            h = nn.gelu(nn.Dense(self.width)(nn.LayerNorm()(x)))
            h = Dropout(self.dropout)(h, deterministic=not train)
            x = x + self.residual_scale * nn.Dense(self.width)(h)
        return nn.Dense(self.num_classes)(nn.LayerNorm()(x))


def model(hp: Mapping[str, Any]) -> nn.Module:
    """The factory jaxmlp calls inside the compiled program with one member's values."""
    return ResidualMLP(dropout=hp["dropout"], residual_scale=hp["residual_scale"])


def spirals(n: int, classes: int = 3, seed: int = 0, noise: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """`n` points of `classes` interleaved spiral arms in 2-D, float32, with integer labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    t = rng.uniform(0.1, 1.0, n)
    angle = 3.0 * np.pi * t + 2.0 * np.pi * y / classes
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], 1) * 3.0 + rng.normal(0.0, noise * t[:, None], (n, 2))
    return x.astype(np.float32), y


def config(epochs: int = 30, quick: bool = False) -> jaxmlp.SweepConfig:
    """The sweep: 3 residual scales × 3 dropout rates × 2 seeds = 18 members, one group."""
    n = 1500 if quick else 6000
    data = jaxmlp.data.arrays(*spirals(n, seed=0), *spirals(n // 3, seed=1), name="spirals")
    return jaxmlp.SweepConfig(dataset=[data], model=[model], batch_size=[64], lr=[3e-3], lr_schedule="cosine",
                              hparams={"residual_scale": [0.25, 0.5, 1.0], "dropout": [0.0, 0.1, 0.3]},
                              seed=[0, 1], epochs=epochs)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/residual_mlp")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="less data and 5 epochs (a check, not a result)")
    args = p.parse_args(argv)
    res = jaxmlp.sweep(config(5 if args.quick else args.epochs, args.quick), out=args.out)
    best = res.best()
    trained = jaxmlp.load(args.out, best["index"], model=model)
    x_test, y_test = spirals((1500 if args.quick else 6000) // 3, seed=1)
    print(f"best on validation: member {best['index']} {({k: best['hparams'][k] for k in ('residual_scale', 'dropout', 'seed')})}; "
          f"test accuracy {best['test']['accuracy']:.4f} in the run, {trained.accuracy(x_test, y_test):.4f} "
          f"reloaded from {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
