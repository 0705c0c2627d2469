"""The flags that say what model trains on what data, and how: one definition for ``jaxmlp train``,
``sweep``, ``hyperband`` and ``search`` (no jax import: the command parses its arguments first)."""

from __future__ import annotations

from typing import Any

Target = Any   # an argparse parser or argument group


def add_model_flags(p: Target, sweep: bool) -> None:
    """The data and the model: dataset, model, layers, activation, batch norm, optimizer, batch size.
    With `sweep`, comma-separated values make groups (one compiled program each)."""
    group = " (comma-separated values make groups)" if sweep else ""
    p.add_argument("--dataset", default="fashion_mnist",
                   help="fashion_mnist, mnist, kmnist, a file.npz (x_train, y_train, x_test, y_test) or tfds:NAME" + group)
    p.add_argument("--data-dir", help="folder with the four IDX files (default: $JAXMLP_DATA_DIR, then the "
                                      "system copy, then tensorflow-datasets)")
    p.add_argument("--model", "--arch", dest="model", default="mlp",
                   help="a registered model: mlp or cnn (--arch is the earlier name)" + group)
    p.add_argument("--hidden", default="256,128",
                   help="hidden layer widths, e.g. 256,128" + (" ('/' separates groups: 8,16/256,128)" if sweep else ""))
    p.add_argument("--activation", default="relu", help="relu, sigmoid, tanh or gelu" + group)
    p.add_argument("--batch-norm", nargs="?", const="on", default="off",
                   help="batch normalisation after each hidden layer" + (" (on, off or on,off)" if sweep else ""))
    p.add_argument("--optimizer", default="adam", help="sgd, momentum, adam, nadam, rmsprop or adamw" + group)
    p.add_argument("--batch-size", default="32", help="minibatch size (default 32, as Keras)" + group)


def add_training_flags(p: Target, processes: bool) -> None:
    """How long and on what share of the data: epochs, early stopping, schedule, splits, chunks, devices.
    `processes`: the command can run as several processes (``--devices`` counts all their devices)."""
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--patience", type=int, default=0, help="early stopping on validation loss (0: off)")
    p.add_argument("--lr-schedule", default="anneal",
                   help="anneal (default): --lr for 70%% of the steps, then linearly to 0; cosine: a cosine "
                        "from --lr to 0; constant: Keras's fixed rate")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out validation share (default 0.1)")
    p.add_argument("--train-fraction", type=float, default=1.0, help="stratified subset of the training set")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the subset, validation split and folds")
    p.add_argument("--chunk-size", type=int, help="members per compiled chunk (default: from a memory estimate)")
    p.add_argument("--devices", type=int,
                   help="devices to shard members over (default: all)" + (
                       "; with several processes, counted over all their devices together, a multiple of "
                       "--num-processes" if processes else ""))
