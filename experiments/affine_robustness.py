"""Affine robustness (Sabour et al. 2017, sec. 5.2, the affNIST experiment).

CapsNet and the baseline CNN are trained on MNIST centred on a 40x40 canvas with only +-2 px random
shifts and evaluated on the clean test digits four times per epoch (every 5 epochs at full budget),
keeping a checkpoint at each; every checkpoint is then tested on a fixed, seeded affine-transformed
copy of the test digits (rotation +-20 deg, shear +-0.2, scale 0.8-1.2; see capsjax.data.affine). As in the
paper, the two models are compared at the same clean accuracy: the lower of the two models' best clean
accuracies, each model early-stopped at its checkpoint closest to it (capsjax.analysis.matching.
match_accuracy). The paper: 79% (CapsNet) vs 66% (CNN) on affNIST at 99.23% / 99.22% clean.

    python experiments/affine_robustness.py --budget reduced --workdir runs/affine --data-dir ../shared/data/mnist
    python experiments/affine_robustness.py --budget smoke ...          # < 1 minute, used by the tests

Writes results.json and results.md (final and matched checkpoints), affine_vs_clean.png (affine
against clean accuracy through training, both models) and affine_examples.png (affine test digits
with the matched checkpoints' predictions). ``--translation 6`` tests the same checkpoints on
digits also shifted up to 6 px (beyond the trained 2 px, more like affNIST) and adds
``_translation6`` to those files' names; finished training runs are reused.
"""

import dataclasses
import pathlib
import statistics

from flax import nnx

from budgets import budget_config, check_data_dir, experiment_parser, run_experiment
from capsjax.analysis.figures import plot_accuracy_pairs, plot_predictions
from capsjax.analysis.matching import accuracy_history, evaluate_checkpoints, match_accuracy
from capsjax.analysis.reports import write_results
from capsjax.data.affine import AffineRanges, affine_test_set
from capsjax.data.registry import load_split
from capsjax.training.checkpoint import restore_params
from capsjax.training.evaluation import model_outputs
from capsjax.training.sweeps import run_variants

CANVAS = 40
EVALS_PER_EPOCH = 4
PAPER = {"capsnet": {"clean": 99.23, "affine": 79.0}, "cnn": {"clean": 99.22, "affine": 66.0}}


def variants(base, budget):
    shape = (CANVAS, CANVAS, 1)
    steps_per_epoch = (base.data.train_examples or 60000) // base.batch_size
    # At paper scale (50 epochs, the full-width CNN's checkpoint ~0.8 GB at 40x40) one evaluation
    # and kept checkpoint per 5 epochs matches finely enough and fits a disk (about 8 GB per model).
    every = 5 * steps_per_epoch if budget == "full" else max(1, steps_per_epoch // EVALS_PER_EPOCH)
    config = dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, canvas=CANVAS),
        capsnet=dataclasses.replace(base.capsnet, image_shape=shape),
        cnn=dataclasses.replace(base.cnn, image_shape=shape),
        eval_every_steps=every,
        keep_checkpoints=None,
    )
    return {"capsnet": config, "cnn": dataclasses.replace(config, model="cnn")}


def compare_seed(table, run_dirs, affine) -> dict:
    """Clean and affine accuracy (percent) of every evaluated checkpoint, and the matched steps."""
    clean = {name: {step: 100.0 * acc for step, acc in accuracy_history(run_dirs[name]).items()} for name in table}
    target, matched = match_accuracy(clean)
    out = {"target_clean_accuracy": target}
    for name in table:
        affine_acc = evaluate_checkpoints(run_dirs[name], affine, sorted(clean[name]))
        final = max(clean[name])
        out[name] = {
            "clean": clean[name],
            "affine": affine_acc,
            "final": {"step": final, "clean": clean[name][final], "affine": affine_acc[final]},
            "matched": {
                "step": matched[name],
                "clean": clean[name][matched[name]],
                "affine": affine_acc[matched[name]],
            },
        }
    return out


def table_lines(per_seed, parameters, header) -> list[str]:
    lines = [
        header,
        "",
        "| model | checkpoint | step | clean test accuracy % | affine test accuracy % | parameters | "
        "paper clean / affine % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in parameters:
        for point in ("matched", "final"):
            rows = [seed[name][point] for seed in per_seed]
            steps = "/".join(str(r["step"]) for r in rows)
            lines.append(
                f"| {name} | {point} | {steps} | {statistics.fmean(r['clean'] for r in rows):.2f} | "
                f"{statistics.fmean(r['affine'] for r in rows):.2f} | {parameters[name]:,} | "
                f"{PAPER[name]['clean']} / {PAPER[name]['affine']} |"
            )
    return lines


def save_figures(workdir, first, table, affine, *, seed, tag="") -> None:
    """affine_vs_clean<tag>.png and affine_examples<tag>.png for one seed's :func:`compare_seed` result."""
    order = {name: sorted(first[name]["clean"], key=int) for name in table}  # JSON keys are strings
    curves = {
        name: ([first[name]["clean"][s] for s in order[name]], [first[name]["affine"][s] for s in order[name]])
        for name in table
    }
    matched = {name: (first[name]["matched"]["clean"], first[name]["matched"]["affine"]) for name in table}
    plot_accuracy_pairs(
        curves,
        workdir / f"affine_vs_clean{tag}.png",
        target=first["target_clean_accuracy"],
        marked=matched,
        ylabel="affine test accuracy %",
    )
    images, predictions = affine.images[:24], {}
    for name in table:
        _, graphdef, params = restore_params(workdir / name / f"seed{seed}", step=first[name]["matched"]["step"])
        predictions[name] = model_outputs(nnx.merge(graphdef, params), images).scores.argmax(-1)
    plot_predictions(images, affine.labels[:24], predictions, workdir / f"affine_examples{tag}.png")


def main():
    parser = experiment_parser(__doc__)
    parser.add_argument(
        "--translation",
        type=float,
        default=AffineRanges().translation,
        help="largest shift (px) of the affine test digits; other values than the default "
        "(the trained +-2 px) write results_translation<N>.* beside the default results",
    )
    args = parser.parse_args()
    check_data_dir(args.data_dir)
    tag = "" if args.translation == AffineRanges().translation else f"_translation{args.translation:g}"
    workdir = pathlib.Path(args.workdir)
    base, seeds = budget_config(args.budget, seeds=args.seeds or 1)
    table = variants(base, args.budget)
    summary = run_variants(table, seeds=seeds, workdir=workdir, data_dir=args.data_dir)
    test = load_split(base.data.name, "test", data_dir=args.data_dir, num_examples=base.data.test_examples)
    affine = affine_test_set(test, seed=0, canvas=CANVAS, ranges=AffineRanges(translation=args.translation))
    per_seed = [compare_seed(table, {name: workdir / name / f"seed{seed}" for name in table}, affine) for seed in seeds]
    parameters = {name: summary[name]["parameters"] for name in table}
    header = (
        f"Budget: {args.budget}, seeds {list(seeds)}, {len(affine)} affine test digits (seed 0, "
        f"translation +-{args.translation:g} px); "
        f"matched at the lower best clean accuracy ({per_seed[0]['target_clean_accuracy']:.2f}% for "
        f"seed {seeds[0]})."
    )
    results = {"seeds": list(seeds), "translation": args.translation, "per_seed": per_seed, "parameters": parameters}
    markdown = write_results(
        workdir, results, "\n".join(table_lines(per_seed, parameters, header)) + "\n", stem=f"results{tag}"
    )
    save_figures(workdir, per_seed[0], table, affine, seed=seeds[0], tag=tag)
    print(markdown)


if __name__ == "__main__":
    run_experiment(main)
