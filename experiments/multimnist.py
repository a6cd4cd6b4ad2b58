"""MultiMNIST (Sabour et al. 2017, sec. 6): segmenting two overlapping digits.

CapsNet on 36x36 images of two overlaid digits of different classes (each shifted up to 4 px),
trained with a margin loss on both classes and the reconstruction of each digit from its own
class capsule; and the baseline CNN (the sec. 5 architecture on 36x36 inputs, per-class sigmoid
cross-entropy on both labels) by the same loop on the same data and budget. A test image counts as
correct when its two highest class scores are exactly its two classes (the paper's rule).
Paper: 5.2% error (CapsNet) vs 8.1% (baseline CNN).

    python experiments/multimnist.py --budget reduced --workdir runs/multimnist --data-dir ../shared/data/mnist
    python experiments/multimnist.py --budget smoke ...       # < 1 minute, used by the tests

Writes results.json and results.md, and in CapsNet's run folder reconstructions_epoch<N>.png
(inputs over the two reconstructions in red and green). ``--no-cnn`` skips the CNN.
"""

import dataclasses

from budgets import budget_config, check_data_dir, experiment_parser, run_experiment
from capsjax.analysis.reports import results_table, write_results
from capsjax.training.sweeps import run_variants

PAPER = {"capsnet": 5.2, "cnn": 8.1}


def multimnist_config(base, budget):
    counts = {"smoke": (512, 256), "reduced": (30000, 10000), "full": (None, None)}[budget]
    return dataclasses.replace(
        base,
        data=dataclasses.replace(
            base.data, name="multimnist", train_examples=counts[0], test_examples=counts[1], max_shift=0
        ),
        capsnet=dataclasses.replace(base.capsnet, image_shape=(36, 36, 1)),
        cnn=dataclasses.replace(base.cnn, image_shape=(36, 36, 1)),
        epochs=base.epochs if budget != "reduced" else 2,
    )


def main():
    parser = experiment_parser(__doc__)
    parser.add_argument("--no-cnn", action="store_true", help="skip the baseline CNN")
    args = parser.parse_args()
    check_data_dir(args.data_dir)
    base, seeds = budget_config(args.budget, seeds=args.seeds or 1)
    config = multimnist_config(base, args.budget)
    table = {"capsnet": config}
    if not args.no_cnn:
        table["cnn"] = dataclasses.replace(config, model="cnn")
    results = run_variants(table, seeds=seeds, workdir=args.workdir, data_dir=args.data_dir)
    header = (
        f"Budget: {args.budget}; {config.data.train_examples or 60000} training pairs x {config.epochs} "
        f"epoch(s), {config.data.test_examples or 10000} test pairs, seeds {list(seeds)}."
    )
    error_column = "test error % (both labels in the top 2)"
    table_md = results_table(results, PAPER, name_column="model", error_column=error_column)
    print(write_results(args.workdir, results, header + "\n\n" + table_md))


if __name__ == "__main__":
    run_experiment(main)
