"""Affine robustness (Sabour et al. 2017, sec. 5.2, the affNIST experiment).

CapsNet and the baseline CNN are trained on MNIST centred on a 40x40 canvas with only +-2 px random
shifts, then tested on the clean (centred) test digits and on a fixed, seeded affine-transformed
copy of them (rotation +-20 deg, shear +-0.2, scale 0.8-1.2; see capsjax.affine). The paper: 79%
(CapsNet) vs 66% (CNN) on affNIST at matched 99.2% clean accuracy.

    python experiments/affine_robustness.py --budget reduced --workdir runs/affine --data-dir ../shared/data/mnist
    python experiments/affine_robustness.py --budget smoke ...          # < 1 minute, used by the tests

Writes results.json, results.md and affine_examples.png (test digits with both models' predictions).
"""

import dataclasses
import json
import pathlib
import statistics

import jax
import numpy as np
from flax import nnx

from capsjax.affine import affine_test_set
from capsjax.data import load_dataset
from capsjax.experiments import budget_config, evaluate_runs, experiment_parser, run_variants
from capsjax.figures import plot_predictions
from capsjax.run import restore_params
from capsjax.train import to_float

CANVAS = 40
PAPER = {"capsnet": {"clean": 99.23, "affine": 79.0}, "cnn": {"clean": 99.22, "affine": 66.0}}


def variants(base):
    shape = (CANVAS, CANVAS, 1)
    config = dataclasses.replace(
        base, data=dataclasses.replace(base.data, canvas=CANVAS),
        capsnet=dataclasses.replace(base.capsnet, image_shape=shape),
        cnn=dataclasses.replace(base.cnn, image_shape=shape))
    return {"capsnet": config, "cnn": dataclasses.replace(config, model="cnn")}


def main():
    args = experiment_parser(__doc__).parse_args()
    workdir = pathlib.Path(args.workdir)
    base, seeds = budget_config(args.budget, seeds=args.seeds or 1)
    table = variants(base)
    clean = run_variants(table, seeds=seeds, workdir=workdir, data_dir=args.data_dir)
    test = load_dataset(base.data.name, "test", data_dir=args.data_dir).take(base.data.test_examples)
    affine = affine_test_set(test, seed=0, canvas=CANVAS)
    affine_acc = evaluate_runs(table, affine, seeds=seeds, workdir=workdir)
    results = {name: {"clean_accuracy": [100 - e for e in clean[name]["errors_percent"]],
                      "affine_accuracy": affine_acc[name], "parameters": clean[name]["parameters"]}
               for name in table}
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"Budget: {args.budget}, seeds {list(seeds)}, {len(affine)} affine test digits (seed 0).", "",
             "| model | clean test accuracy % | affine test accuracy % | parameters | paper clean / affine % |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {statistics.fmean(r['clean_accuracy']):.2f} | "
                     f"{statistics.fmean(r['affine_accuracy']):.2f} | {r['parameters']:,} | "
                     f"{PAPER[name]['clean']} / {PAPER[name]['affine']} |")
    (workdir / "results.md").write_text("\n".join(lines) + "\n")
    predictions = {}
    images = affine.images[:24]
    for name in table:
        _, graphdef, params = restore_params(workdir / name / f"seed{seeds[0]}")
        lengths = jax.jit(lambda m, x: m(to_float(x)).lengths)(nnx.merge(graphdef, params), images)
        predictions[name] = np.asarray(lengths).argmax(-1)
    plot_predictions(images, affine.labels[:24], predictions, workdir / "affine_examples.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
