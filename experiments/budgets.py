"""What every experiment script shares: the budgets (smoke, reduced, full) and the command-line arguments."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable
from typing import NoReturn

from capsjax.data.registry import load_split
from capsjax.errors import CapsjaxError
from capsjax.nn import CapsNetConfig, CNNConfig
from capsjax.training.config import DataConfig, OptimConfig, TrainConfig

# Budgets: "smoke" checks the machinery in well under a minute; "reduced" is what a 2-core CPU
# affords in a few hours (stated in RESULTS.md); "full" is the paper's scale (hours on a GPU).
BUDGETS = ("smoke", "reduced", "full")


def budget_config(budget: str, *, seeds: int | None = None) -> tuple[TrainConfig, tuple[int, ...]]:
    """The base config and seeds of a budget (model sizes and data counts)."""
    if budget == "smoke":
        base = TrainConfig(
            capsnet=CapsNetConfig(conv_channels=16, primary_types=4, class_dim=8, decoder_hidden=(32,)),
            cnn=CNNConfig(conv_channels=(8, 8, 4), hidden=(32, 16)),
            data=DataConfig(train_examples=256, test_examples=128),
            batch_size=64,
            eval_batch_size=128,
            epochs=1,
            log_every_steps=4,
            checkpoint_every_steps=1000,
        )
        default_seeds = 2
    elif budget == "reduced":
        # A 2-core CPU affords ~1 minute per run: a narrower CapsNet (64 conv channels, 8 primary
        # capsule types = 288 capsules; routing, class capsules and decoder as in the paper) and a
        # CNN narrowed alike, 3 epochs of 10,000 training images, the full test set.
        base = TrainConfig(
            capsnet=CapsNetConfig(conv_channels=64, primary_types=8),
            cnn=CNNConfig(conv_channels=(64, 64, 32)),
            data=DataConfig(train_examples=10000, test_examples=None),
            optim=OptimConfig(learning_rate=3e-3, decay_steps=100, decay_rate=0.9),
            batch_size=64,
            eval_batch_size=500,
            epochs=3,
            checkpoint_every_steps=1000,
        )
        default_seeds = 3
    elif budget == "full":
        base = TrainConfig(epochs=50)
        default_seeds = 3
    else:
        raise ValueError(f"budget: expected one of {BUDGETS}, got {budget!r}")
    return base, tuple(range(seeds or default_seeds))


def refuse(message: str) -> NoReturn:
    """Stop the running script with one line on stderr, named by the script, and exit status 2 (the
    project's code for bad input)."""
    print(f"{pathlib.Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_experiment(main: Callable[[], int | None]) -> NoReturn:
    """Run an experiment script's ``main`` and exit with its status; an error capsjax raises on purpose
    (data not found, a work directory in use, a bad config) stops the script with its message on
    stderr, named by the script, instead of a traceback, as the ``capsjax`` command reports them."""
    try:
        code = main()
    except CapsjaxError as err:
        print(f"{pathlib.Path(sys.argv[0]).name}: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    raise SystemExit(code or 0)


def check_data_dir(data_dir: str | None, name: str = "mnist") -> None:
    """Stop the script (:func:`refuse`) when ``--data-dir`` was given but does not hold ``name``'s
    train and test splits: before anything is generated, trained or written. None (not given) passes:
    the data is then found as ``capsjax train`` finds it."""
    if data_dir is None:
        return
    try:
        for split in ("train", "test"):
            load_split(name, split, data_dir=data_dir)
    except CapsjaxError as err:
        refuse(str(err))


def experiment_parser(
    description: str, *, data_dir_help: str = "folder with the MNIST IDX files"
) -> argparse.ArgumentParser:
    """The arguments every experiment script takes: --budget, --workdir, --data-dir (``data_dir_help``
    says what it holds), --seeds."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=BUDGETS, default="smoke")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--data-dir", help=data_dir_help)
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the budget's)")
    return parser
