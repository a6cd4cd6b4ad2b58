"""Routing algorithms compared in one CapsNet (the paper's routing and four later ones).

The same CapsNet (the budget's size), data, loss and schedule, differing only in
``capsnet.routing`` and in how the class capsules score their classes: dynamic routing with 1 and
3 iterations (Sabour et al. 2017; class scores: the capsules' lengths; one iteration couples every
primary capsule uniformly, c_ij = 1/10: it is the no-routing baseline), EM routing (Hinton et al.
2018; 3 iterations; in CapsNet its output capsules are the clusters' means, its input activations
the primary capsules' lengths, beta_u and beta_a learned, its costs standardised over the classes
(``em_routing(normalize_cost=True)``: with the paper's cost it stayed at chance), and the class
scores its output activations), self-attention routing (Mazzia et al. 2021; learned priors; lengths) and inverted
dot-product routing (Tsai et al. 2020; 3 iterations; its layer norm's scale and offset learned;
the class scores a learned linear readout of each class capsule's pose, as that paper classifies).
Each is trained and tested on

- MNIST and Fashion-MNIST;
- affine: MNIST on a 40x40 canvas with +-2 px training shifts, as experiments/affine_robustness.py
  trains, tested on its fixed affine copy of the test digits with shifts up to +-6 px;
- MultiMNIST, as experiments/multimnist.py (error: the two labels are not the two top scores).

Reported per variant: test error mean +- std over seeds on each dataset, parameters, MFLOP per
image (XLA's count of the jitted classify forward) and training images/s (from each run's
summary.json).

    python experiments/routing_comparison.py --budget reduced --workdir runs/routing --data-dir ../shared/data
    python experiments/routing_comparison.py --budget smoke ...    # ~7 minutes; the tests run a part of it

``--data-dir`` is a folder holding ``mnist/`` (and ``fashion-mnist/``; else Fashion-MNIST is
found as ``capsjax train`` finds it), or MNIST's own folder. ``--variants`` and ``--datasets`` run a part of the
comparison. Writes routing_comparison.json, routing_comparison.md (the table) and
routing_comparison.png (test error per variant per dataset, +-std bars) in the work directory;
the runs live in ``<workdir>/<dataset>/<variant>/seed<k>`` and finished ones are reused.
"""

import dataclasses
import json
import pathlib

from affine_robustness import CANVAS
from affine_robustness import variants as affine_variants
from budgets import budget_config, check_data_dir, experiment_parser, run_experiment
from capsjax.analysis.bench import gflop_per_image
from capsjax.analysis.figures import plot_error_bars
from capsjax.analysis.reports import write_results
from capsjax.data.affine import AffineRanges, affine_test_set
from capsjax.data.registry import load_split
from capsjax.ops.routing import get_routing
from capsjax.ops.routing_types import learned_parameters
from capsjax.training.evaluation import evaluate_checkpoint
from capsjax.training.sweeps import run_variants, summarise
from multimnist import multimnist_config

# variant: (routing name, iterations, class scores, what it is)
ROUTINGS = {
    "dynamic1": ("dynamic", 1, "length", "dynamic, 1 iteration = no routing (uniform c_ij = 1/classes)"),
    "dynamic3": ("dynamic", 3, "length", "dynamic, 3 iterations"),
    "em": ("em", 3, "activation", "EM, 3 iterations, standardised costs; scores: output activations"),
    "self_attention": ("self_attention", 1, "length", "self-attention (no iterations), learned priors"),
    "inverted_dot_product": (
        "inverted_dot_product",
        3,
        "linear",
        "inverted dot-product, 3 iterations; scores: linear readout of the poses",
    ),
}
DATASETS = {
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "affine": "affine (+-6 px)",
    "multimnist": "MultiMNIST",
}
AFFINE_TEST = AffineRanges(translation=6.0)
STEM = "routing_comparison"


def dataset_config(base, dataset: str, budget: str):
    """The base config of one dataset: the budget's, on that data (as the other experiments build it)."""
    if dataset == "mnist":
        return base
    if dataset == "fashion_mnist":
        return dataclasses.replace(base, data=dataclasses.replace(base.data, name="fashion_mnist"))
    if dataset == "affine":
        # affine_robustness's data and model shape, without its extra evaluations and checkpoints
        # (it compares checkpoints; here only the final model is tested).
        config = affine_variants(base, budget)["capsnet"]
        return dataclasses.replace(
            config, eval_every_steps=base.eval_every_steps, keep_checkpoints=base.keep_checkpoints
        )
    if dataset == "multimnist":
        return multimnist_config(base, budget)
    raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {dataset!r}")


def variants(config, names):
    """CapsNet configs that differ only in ``capsnet.routing`` (name and iterations) and in how the
    class capsules give the class scores (``capsnet.scores``: what each routing's paper uses)."""
    out = {}
    for name in names:
        routing_name, iters, scores, _ = ROUTINGS[name]
        learn = bool(learned_parameters(get_routing(routing_name)))  # every routing that has parameters learns them
        routing = dataclasses.replace(config.capsnet.routing, name=routing_name, num_iters=iters, learn=learn)
        capsnet = dataclasses.replace(config.capsnet, routing=routing, scores=scores)
        out[name] = dataclasses.replace(config, capsnet=capsnet)
    return out


def affine_errors(run_dirs, affine) -> dict:
    """Test error on the affine set of each run's final model, kept in ``affine_test.json`` of the run
    (so that a repeated command does not test again)."""
    errors = []
    for run_dir in run_dirs:
        cached = run_dir / "affine_test.json"
        if not cached.exists():
            metrics = evaluate_checkpoint(run_dir, dataset=affine)
            cached.write_text(json.dumps({"source": affine.source, **metrics}, indent=2) + "\n")
        errors.append(json.loads(cached.read_text())["error_percent"])
    return summarise(errors)


def data_folder(data_dir, name: str):
    """``data_dir`` as given for MNIST and MultiMNIST (built from MNIST; the folder was checked before
    anything ran). For Fashion-MNIST, ``data_dir`` where it is its folder or holds it (either spelling,
    ``fashion-mnist``); else None, so that it is found as ``capsjax train`` finds it (an explicit folder
    is the only place looked in)."""
    if data_dir is None or name in ("mnist", "multimnist"):
        return data_dir
    root, names = pathlib.Path(data_dir), (name, name.replace("_", "-"))
    return data_dir if root.name in names or any((root / n).is_dir() for n in names) else None


def run_dataset(dataset, config, names, *, seeds, workdir, data_dir) -> dict:
    """Every variant on one dataset: run_variants' summary per variant, with MFLOP per image; for
    ``affine`` the error is on the affine test set and the clean test error is kept as ``clean``."""
    data_dir = data_folder(data_dir, config.data.name)
    table = variants(config, names)
    results = run_variants(table, seeds=seeds, workdir=workdir / dataset, data_dir=data_dir)
    if dataset == "affine":
        test = load_split(config.data.name, "test", data_dir=data_dir, num_examples=config.data.test_examples)
        affine = affine_test_set(test, seed=0, canvas=CANVAS, ranges=AFFINE_TEST)
        for name, row in results.items():
            clean = {key: row[key] for key in ("errors_percent", "mean", "std", "runs")}
            run_dirs = [workdir / dataset / name / f"seed{seed}" for seed in seeds]
            results[name] = {**row, **affine_errors(run_dirs, affine), "clean": clean}
    for name, row in results.items():
        row["mflop_per_image"] = 1e3 * gflop_per_image(table[name].capsnet, train=False)["infer"]
    return results


def markdown(results: dict, names, header: str) -> str:
    """Rows: variants; columns: test error per dataset, then parameters, MFLOP/image and train img/s
    on the first dataset."""
    datasets = list(results)
    first = results[datasets[0]]
    lines = [
        header,
        "",
        "| variant | routing | "
        + " | ".join(f"{DATASETS[d]} test error %" for d in datasets)
        + f" | parameters | MFLOP/image | train img/s ({DATASETS[datasets[0]]}) |",
        "|---|---|" + "---:|" * (len(datasets) + 3),
    ]
    for name in names:
        errors = " | ".join(f"{results[d][name]['mean']:.2f} +- {results[d][name]['std']:.2f}" for d in datasets)
        row = first[name]
        lines.append(
            f"| {name} | {ROUTINGS[name][3]} | {errors} | {row['parameters']:,} | {row['mflop_per_image']:.2f} | "
            f"{row['train_examples_per_sec']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def data_line(dataset, config) -> str:
    train, test = config.data.train_examples or 60000, config.data.test_examples or 10000
    side = config.capsnet.image_shape[0]
    return f"{DATASETS[dataset]} ({side}x{side}): {train} training images x {config.epochs} epoch(s), {test} test"


def main():
    parser = experiment_parser(__doc__)
    parser.add_argument("--variants", nargs="+", choices=list(ROUTINGS), default=list(ROUTINGS))
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    args = parser.parse_args()
    if set(args.datasets) - {"fashion_mnist"}:  # every other dataset is built from MNIST
        check_data_dir(args.data_dir)
    workdir = pathlib.Path(args.workdir)
    base, seeds = budget_config(args.budget, seeds=args.seeds)
    datasets = [d for d in DATASETS if d in args.datasets]
    names = [n for n in ROUTINGS if n in args.variants]
    configs = {dataset: dataset_config(base, dataset, args.budget) for dataset in datasets}
    results = {
        dataset: run_dataset(dataset, configs[dataset], names, seeds=seeds, workdir=workdir, data_dir=args.data_dir)
        for dataset in datasets
    }
    header = (
        f"Budget: {args.budget}, seeds {list(seeds)}; "
        + "; ".join(data_line(d, configs[d]) for d in datasets)
        + ". Test error: mean +- std over seeds; affine: the final model on the affine test digits "
        "(+-6 px shifts); MultiMNIST: the two labels are not the two top scores. Parameters, MFLOP/image "
        f"(XLA's count of the classify forward) and train img/s (mean over seeds) on {DATASETS[datasets[0]]}."
    )
    out = {
        "budget": args.budget,
        "seeds": list(seeds),
        "variants": {
            name: {"routing": ROUTINGS[name][0], "num_iters": ROUTINGS[name][1], "scores": ROUTINGS[name][2]}
            for name in names
        },
        "datasets": results,
    }
    table = write_results(workdir, out, markdown(results, names, header), stem=STEM)
    panels = {
        DATASETS[d]: {name: (results[d][name]["mean"], results[d][name]["std"]) for name in names} for d in datasets
    }
    plot_error_bars(panels, workdir / f"{STEM}.png")
    print(table)


if __name__ == "__main__":
    run_experiment(main)
