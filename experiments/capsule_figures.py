"""Paper Fig. 4 and the routing picture from a trained CapsNet run:

- capsule_dimensions.png: each of the 16 dimensions of the winning capsule moved by -0.25..+0.25
  (steps of 0.05) and decoded;
- reconstructions_and_failures.png: test inputs over reconstructions, then misclassified digits;
- couplings.png: coupling of each primary capsule (6x6 grid per type) to the predicted class after
  1 and after 3 routing iterations.

    python experiments/capsule_figures.py --workdir runs/mnist --data-dir ../shared/data/mnist
    python experiments/capsule_figures.py --budget smoke --workdir runs/figures_smoke ...   # trains a tiny model first
"""

import argparse
import json
import pathlib

from budgets import check_data_dir, run_experiment
from capsjax.analysis.figures import capsule_figures
from capsjax.data.registry import load_split
from capsjax.training.config import apply_overrides, load_config_file, read_config
from capsjax.training.loop import train_and_evaluate

SMOKE = pathlib.Path(__file__).parent / "configs" / "smoke.py"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a trained CapsNet run (or where to train with --budget)")
    parser.add_argument("--data-dir")
    parser.add_argument("--budget", choices=("smoke",), help="first train a small CapsNet for one epoch")
    args = parser.parse_args()
    if args.budget == "smoke":
        config = apply_overrides(load_config_file(SMOKE), ["--config.epochs=1", "--config.data.train_examples=1200"])
        check_data_dir(args.data_dir, config.data.name)
        train_and_evaluate(config, args.workdir, data_dir=args.data_dir, resume=True)
    config = read_config(pathlib.Path(args.workdir) / "config.json")
    test = load_split(config.data.name, "test", data_dir=args.data_dir)
    written = capsule_figures(args.workdir, test)
    (pathlib.Path(args.workdir) / "figures.json").write_text(json.dumps(written, indent=2) + "\n")
    print(json.dumps(written, indent=2))


if __name__ == "__main__":
    run_experiment(main)
