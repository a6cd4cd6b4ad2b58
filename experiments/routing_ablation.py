"""Paper Table 1: routing 1 vs 3 iterations, with and without the reconstruction loss; and the
baseline CNN trained by the same loop on the same budget.

    python experiments/routing_ablation.py --budget reduced --workdir runs/ablation --data-dir ../shared/data/mnist
    python experiments/routing_ablation.py --budget smoke ...    # < 1 minute, used by the tests

Writes ``results.json`` and ``results.md`` (mean +- std test error over seeds) in the work directory.
"""

import dataclasses

from budgets import budget_config, check_data_dir, experiment_parser, run_experiment
from capsjax.analysis.reports import results_table, write_results
from capsjax.training.config import LossConfig
from capsjax.training.sweeps import run_variants

# Sabour et al. (2017), Table 1 (MNIST test error %, mean over 3 trials); baseline CNN 0.39%.
PAPER = {
    "routing1_no_recon": 0.34,
    "routing1_recon": 0.29,
    "routing3_no_recon": 0.35,
    "routing3_recon": 0.25,
    "baseline_cnn": 0.39,
}


def variants(base, *, with_cnn: bool):
    out = {}
    for iters in (1, 3):
        for recon in (False, True):
            capsnet = dataclasses.replace(
                base.capsnet, routing=dataclasses.replace(base.capsnet.routing, num_iters=iters)
            )
            loss = LossConfig(recon_weight=0.0005 if recon else 0.0)
            out[f"routing{iters}_{'recon' if recon else 'no_recon'}"] = dataclasses.replace(
                base, capsnet=capsnet, loss=loss
            )
    if with_cnn:
        out["baseline_cnn"] = dataclasses.replace(base, model="cnn", batch_size=min(base.batch_size, 64))
    return out


def main():
    parser = experiment_parser(__doc__)
    parser.add_argument("--no-cnn", action="store_true", help="skip the baseline CNN")
    parser.add_argument("--cnn-seeds", type=int, help="seeds for the CNN (default: as --seeds)")
    args = parser.parse_args()
    check_data_dir(args.data_dir)
    base, seeds = budget_config(args.budget, seeds=args.seeds)
    table = variants(base, with_cnn=False)
    results = run_variants(table, seeds=seeds, workdir=args.workdir, data_dir=args.data_dir)
    cnn_seeds = seeds
    if not args.no_cnn:
        cnn_seeds = tuple(range(args.cnn_seeds)) if args.cnn_seeds else seeds
        cnn = {"baseline_cnn": variants(base, with_cnn=True)["baseline_cnn"]}
        results |= run_variants(cnn, seeds=cnn_seeds, workdir=args.workdir, data_dir=args.data_dir)
    header = (
        f"Budget: {args.budget} ({len(seeds)} seeds for CapsNet, {len(cnn_seeds)} for the CNN; "
        f"{base.data.train_examples or 60000} training images x {base.epochs} epoch(s), "
        f"{base.data.test_examples or 10000} test images)."
    )
    print(write_results(args.workdir, results, header + "\n\n" + results_table(results, PAPER)))


if __name__ == "__main__":
    run_experiment(main)
