"""The ``capsjax`` command: ``train``, ``eval``, ``predict``, ``export``, ``average`` and ``bench``.

Parsing only; work is in the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import sys
import threading
import time

from capsjax.errors import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    CapsjaxError,
    DataNotFoundError,
    DistributedError,
    NonFiniteError,
    UsageError,
    WeightsError,
)

EPILOG = """\
A config file (--config FILE.py) is Python that capsjax runs to call its get_config(), as
ml_collections' config files are: run only config files you trust. A run's config.json is
continued with --resume --workdir DIR, not given to --config.

exit codes: 0 done; 1 a failure while running (storage, download, another process of a
distributed run); 2 bad input (config, flags, data or weights files, work directory);
3 training diverged; 130 interrupted (a run checkpoints first: continue it with --resume).
"""


def with_data(config, data: str):
    """``config`` training on ``data``: a dataset name, or a path to data files (any supported format)."""
    from capsjax.data.registry import DATASETS

    if data in DATASETS:
        return dataclasses.replace(config, data=dataclasses.replace(config.data, name=data, path=None))
    path = pathlib.Path(data)
    if not path.exists():
        names = ", ".join(sorted(DATASETS))
        raise DataNotFoundError(f"--data {data}: neither a dataset name ({names}) nor an existing path")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(path.absolute())))


def _join_distributed_run(args) -> None:
    """Join the run of several processes the flags, the environment or the cluster describe (before
    any other JAX call); nothing for a single process."""
    from capsjax.training.distributed import ProcessSpec, initialize

    spec = ProcessSpec(args.coordinator, args.num_processes, args.process_id)
    initialize(spec, heartbeat_timeout=args.heartbeat_timeout)


def _config_of_weights(path: str):
    """The training config stored in a weights file (a one-line error if it is not one)."""
    from capsjax.training.weights import read_weights

    if not pathlib.Path(path).is_file():
        raise WeightsError(f"--init-weights {path}: no such file")
    return read_weights(path).config


def _check_overrides_reach_the_model(config, overrides) -> None:
    """Refuse overrides of a model that the run does not train: they would change nothing."""
    from capsjax.nn.registry import MODELS
    from capsjax.training.config import split_overrides

    for path, _ in split_overrides(overrides):
        head = path.split(".", 1)[0]
        if head in MODELS and head != config.model:
            raise UsageError(
                f"--config.{path}: this run trains {config.model}, so a setting of {head} has no effect; "
                f"set --config.{config.model}.... instead, or --config.model={head}"
            )


def _train(args, overrides) -> int:
    _join_distributed_run(args)
    from capsjax.training.config import apply_overrides, load_config_file, read_config
    from capsjax.training.loop import train_and_evaluate

    workdir = pathlib.Path(args.workdir)
    if args.config:
        config = load_config_file(args.config)
    elif args.resume and (workdir / "config.json").exists():
        config = read_config(workdir / "config.json")
    elif args.init_weights:
        config = _config_of_weights(args.init_weights)
    else:
        raise UsageError("--config FILE is required (or --resume with an existing --workdir, or --init-weights FILE)")
    config = apply_overrides(config, overrides)
    _check_overrides_reach_the_model(config, overrides)
    if args.init_weights:
        config = dataclasses.replace(config, init_weights=str(pathlib.Path(args.init_weights).absolute()))
    if args.data:
        config = with_data(config, args.data)
    summary = train_and_evaluate(config, workdir, data_dir=args.data_dir, resume=args.resume)
    from capsjax.training.distributed import is_primary

    if not is_primary():  # process 0 reports for a distributed run
        return 0 if summary["status"] == "completed" else 130
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "status",
                    "step",
                    "test_accuracy",
                    "test_error_percent",
                    "wall_time_sec",
                    "train_examples_per_sec",
                )
            },
            indent=2,
        )
    )
    return 0 if summary["status"] == "completed" else 130


def _eval(args, overrides) -> int:
    from capsjax.training.evaluation import evaluate_checkpoint, evaluate_weights

    if overrides:
        raise UsageError(f"unexpected arguments {overrides}")
    if (args.workdir is None) == (args.weights is None):
        raise UsageError("give --workdir DIR or --weights FILE (one of them)")
    dataset = None
    if args.data:
        from capsjax.training.config import read_config
        from capsjax.training.datasets import load_data_split
        from capsjax.training.weights import read_weights

        if args.weights:
            config = read_weights(args.weights).config
        else:
            config = read_config(pathlib.Path(args.workdir) / "config.json")
        dataset = load_data_split(with_data(config, args.data), "test", args.data_dir)
    if args.weights:
        metrics = evaluate_weights(args.weights, data_dir=args.data_dir, dataset=dataset)
    else:
        metrics = evaluate_checkpoint(args.workdir, data_dir=args.data_dir, dataset=dataset)
    print(json.dumps(metrics, indent=2))
    return 0


def _predict(args, overrides) -> int:
    from capsjax.analysis.classify import classify_files

    if overrides:
        raise UsageError(f"unexpected arguments {overrides}")
    if (args.workdir is None) == (args.weights is None):
        raise UsageError("give --workdir DIR or --weights FILE (one of them)")
    results = classify_files(
        args.workdir, args.images, output_dir=args.output_dir, resize=args.resize, weights=args.weights
    )
    for result in results:
        scores = " ".join(f"{x:.3f}" for x in result["scores"])
        name = f" ({result['class_name']})" if result["class_name"] else ""
        print(f"{result['image']}: class {result['class']}{name}  scores [{scores}]  -> {result['reconstruction']}")
    return 0


def _export(args, overrides) -> int:
    from capsjax.training.weights import export_weights

    if overrides:
        raise UsageError(f"unexpected arguments {overrides}")
    print(json.dumps(export_weights(args.workdir, args.output, step=args.step, dtype=args.dtype), indent=2))
    return 0


def _average(args, overrides) -> int:
    from capsjax.training.weights import average_weights

    if overrides:
        raise UsageError(f"unexpected arguments {overrides}")
    print(json.dumps(average_weights(args.weights, args.output, dtype=args.dtype), indent=2))
    return 0


def _bench(args, overrides) -> int:
    from capsjax.analysis.bench import run_benchmarks

    run_benchmarks(args.workdir, quick=args.quick, bfloat16=args.bfloat16, peers_only=args.peers_only, extra=overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capsjax", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model; overrides like --config.epochs=2 follow",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--config", help="config file: Python with get_config(), run when loaded (experiments/configs/*.py)"
    )
    train.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics, images)")
    train.add_argument(
        "--data",
        help="a dataset name (mnist, fashion_mnist, kmnist, cifar10, multimnist, viewpoints) or a path: "
        "an image folder, a .npz, CIFAR, SVHN or smallNORB files; the model is sized to the data",
    )
    train.add_argument(
        "--data-dir",
        help="folder with the data files; it must exist (default: the run's recorded folder with --resume, "
        "else $CAPSJAX_DATA_DIR, the cache, a download)",
    )
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --workdir")
    train.add_argument(
        "--init-weights",
        metavar="FILE",
        help="start from the weights in FILE (capsjax export) instead of a random initialisation, with a "
        "fresh optimizer; the model must fit them (without --config: the config stored in FILE)",
    )
    distributed = train.add_argument_group(
        "distributed run (one process per host; found by itself under SLURM, Open MPI and on Cloud TPU slices)"
    )
    distributed.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (every process)")
    distributed.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    distributed.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. N-1")
    distributed.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=100,
        metavar="S",
        help="seconds without news of a process before the others stop (default 100)",
    )
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="test accuracy of a run's latest checkpoint or of a weights file")
    evaluate.add_argument("--workdir")
    evaluate.add_argument("--weights", help="a weights file written by `capsjax export` (instead of --workdir)")
    evaluate.add_argument("--data", help="evaluate on this dataset name or path instead of the run's test split")
    evaluate.add_argument("--data-dir")
    evaluate.set_defaults(run=_eval)

    predict = commands.add_parser("predict", help="classify and reconstruct PNG images with a trained run")
    predict.add_argument("--workdir")
    predict.add_argument("--weights", help="a weights file written by `capsjax export` (instead of --workdir)")
    predict.add_argument(
        "--output-dir",
        help="where reconstructions go (default: WORKDIR/predictions; with --weights FILE: ./predictions)",
    )
    predict.add_argument("--resize", action="store_true", help="fit images of another size to the model's")
    predict.add_argument("images", nargs="+", help="images of the model's size and channels (28x28 gray for MNIST)")
    predict.set_defaults(run=_predict)

    export = commands.add_parser("export", help="write a run's checkpoint as one compact weights file")
    export.add_argument("--workdir", required=True)
    export.add_argument(
        "--output", required=True, help="the weights file to write (e.g. weights/capsnet_mnist.msgpack)"
    )
    export.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    export.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="storage precision")
    export.set_defaults(run=_export)

    average = commands.add_parser(
        "average", help="write one weights file holding the mean of several files of one model (a model soup)"
    )
    average.add_argument("weights", nargs="+", metavar="FILE", help="weights files of one model (capsjax export)")
    average.add_argument("--output", required=True, help="the weights file to write")
    average.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="storage precision")
    average.set_defaults(run=_average)

    bench = commands.add_parser("bench", help="speed and memory benchmarks (JSON + Markdown in --workdir)")
    bench.add_argument("--workdir", default="runs/bench")
    bench.add_argument("--quick", action="store_true", help="small sizes, for tests")
    bench.add_argument("--peers-only", action="store_true", help="only the side-by-side comparison with the peers")
    bench.add_argument("--bfloat16", action="store_true", help="compare every system with bfloat16 compute")
    bench.set_defaults(run=_bench)
    return parser


class _NoTracebacks(logging.Filter):
    """Without --debug: log records keep their one-line message, never a traceback; errors that orbax
    logs from its background threads are dropped (the same error reaches the command, which reports it),
    and so are asyncio's reports of orbax's parallel write tasks whose failure nobody retrieved (when a
    full disk fails several array writes at once, the first failure is the one the command reports)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(("orbax", "absl")):
            return False
        if record.name == "asyncio" and _orphaned_orbax_task(record.getMessage()):
            return False
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def _orphaned_orbax_task(message: str) -> bool:
    """Whether an asyncio log message reports a failed orbax task whose exception was never retrieved."""
    return message.startswith("Task exception was never retrieved") and "/orbax/" in message


def _quiet_background_errors() -> None:
    """Without --debug: hide the "Event loop is closed" tracebacks that tensorstore's callbacks print
    when a checkpoint write failed and orbax closed its event loop (the failure itself is reported)."""
    if getattr(sys.unraisablehook, "capsjax_quiet", False):
        return  # installed already (main() called again in one process)
    previous_excepthook, previous_unraisablehook = sys.excepthook, sys.unraisablehook

    def closed_loop(value) -> bool:
        return isinstance(value, RuntimeError) and "Event loop is closed" in str(value)

    def excepthook(kind, value, tb):
        if not closed_loop(value):
            previous_excepthook(kind, value, tb)

    def unraisablehook(unraisable):
        if not closed_loop(unraisable.exc_value):
            previous_unraisablehook(unraisable)

    unraisablehook.capsjax_quiet = True
    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


def _report(command: str, err: BaseException) -> int:
    """Print ``err`` as one line for ``command``; returns the exit code it stands for."""
    if isinstance(err, KeyboardInterrupt):
        print(f"capsjax {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(err, NonFiniteError):
        print(f"capsjax {command}: training diverged: {err}", file=sys.stderr)
        return err.exit_code
    if isinstance(err, CapsjaxError):
        print(f"capsjax {command}: error: {err}", file=sys.stderr)
        return err.exit_code
    if isinstance(err, OSError):  # a folder that cannot be written, a full disk: the path and the problem
        where = f"{err.filename}: " if err.filename else ""
        print(f"capsjax {command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"capsjax {command}: error: {err}", file=sys.stderr)  # a ValueError of a library beneath
    return EXIT_INPUT


def _quiet_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("jax").setLevel(logging.WARNING)  # no "Unable to initialize backend 'tpu'" on a CPU
    if not debug:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_NoTracebacks())
        _quiet_background_errors()


def main(argv=None) -> int:
    """Run the ``capsjax`` command ``argv`` (default: ``sys.argv``); returns its exit code."""
    from capsjax.training.host_memory import limit_malloc_arenas

    limit_malloc_arenas()  # before JAX's threads first allocate; see capsjax.training.host_memory
    args, overrides = build_parser().parse_known_args(argv)
    _quiet_logging(args.debug)
    try:
        return args.run(args, overrides)
    except (CapsjaxError, ValueError, OSError, KeyboardInterrupt) as err:
        if args.debug:
            raise
        code = _report(args.command, err)
        if isinstance(err, DistributedError):
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(code)  # JAX's exit would wait at a barrier for the lost process, then abort
        return code


def _exit(code: int, *, grace_seconds: float = 10.0) -> None:
    """Exit with ``code``, without waiting forever for a library's background threads (a checkpoint
    writer whose write failed): they get ``grace_seconds`` to end, then the process ends anyway."""
    deadline = time.monotonic() + grace_seconds
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def entry_point() -> None:
    """The ``capsjax`` program: :func:`main`, then an exit that background threads cannot hold up."""
    _exit(main())


if __name__ == "__main__":
    entry_point()
