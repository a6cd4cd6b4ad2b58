"""The jitted train and eval steps: pure functions of pytrees, compiled once.

The train step is ``(TrainState, images, labels) -> (TrainState, metrics)``; the model's structure
(NNX ``GraphDef``) is closed over. The train step runs the model in training mode (batch norm by
the batch's statistics, running averages updated); the eval and classify steps in evaluation mode
(running averages), see :func:`capsjax.nn.interface.with_mode`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from capsjax.nn.interface import with_mode
from capsjax.ops.augmentation import augment_batch
from capsjax.ops.preprocess import crop_batch, shift_batch, to_float
from capsjax.training.config import TrainConfig
from capsjax.training.host_memory import release_free_memory
from capsjax.training.objectives import classification_loss, compute_losses, correct_predictions
from capsjax.training.state import TrainState, learning_rate_schedule, make_optimizer


def teacher_scores(teachers: Sequence[tuple[nnx.GraphDef, nnx.State]], images: jax.Array) -> jax.Array:
    """Mean class scores ``[batch, classes]`` of trained models ``(graph, params)`` in evaluation mode
    on float images ``[batch, h, w, c]``, without reconstructions."""
    scores = [
        with_mode(nnx.merge(graph, params), training=False)(images, reconstruct=False).scores
        for graph, params in teachers
    ]
    return jnp.mean(jnp.stack(scores), axis=0)


def make_train_step(
    graphdef: nnx.GraphDef, config: TrainConfig, teachers: Sequence[tuple[nnx.GraphDef, nnx.State]] = ()
) -> Callable:
    """The jitted train step ``(state, images uint8 [b,h,w,c], labels [b]) -> (state, metrics)``.

    Augmentation (random ``config.data.crop`` crops, random shifts of ``config.data.max_shift``
    pixels, the elastic distortions, rotations, squishes and erased patches of
    ``config.data.augmentation()``) runs on device inside the step; its randomness and the dropout
    key derive from ``fold_in(state.rng, state.step)``, so a resumed run repeats them exactly. The
    state's buffers are donated. ``metrics["finite"]`` says whether the loss and the gradients were
    finite; with ``config.on_nonfinite == "skip"`` a step whose were not leaves the parameters and
    the optimizer state as they were. Gradients and the optimizer see the parameters (``nnx.Param``)
    only; the batch statistics a model with batch norm keeps in ``state.params`` come back updated
    by the step's batch.

    With ``teachers`` (``(graph, params)`` of trained models, see ``TrainConfig.teachers``) the loss
    also pulls the scores toward the teachers' mean scores of the same augmented images
    (:func:`teacher_scores`); their parameters are arguments of the compiled step, not constants in it.
    """
    tx = make_optimizer(config.optim)
    schedule = learning_rate_schedule(config.optim)
    teacher_graphs = tuple(graph for graph, _ in teachers)

    def train_step(state: TrainState, images, labels, targets=None, teacher_params=()):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        shift_key, dropout_key = jax.random.split(key)
        images = to_float(images)
        if config.data.crop and images.shape[1] > config.data.crop:  # test images were centre-cropped at load
            images = crop_batch(images, jax.random.fold_in(key, 2), size=config.data.crop)
        if targets is not None:
            targets = to_float(targets)  # objects were placed by the data generator: no shifts
        else:
            options = config.data.augmentation()
            if any(options.values()):
                images = augment_batch(images, jax.random.fold_in(key, 3), **options)
            if config.data.max_shift > 0:
                images = shift_batch(images, shift_key, max_shift=config.data.max_shift)

        taught = teacher_scores(list(zip(teacher_graphs, teacher_params, strict=True)), images) if teachers else None

        def loss_fn(params, batch_stats):
            # copy: batch norm updates its statistics in place, which NNX allows only on variables
            # created inside this trace
            model = with_mode(nnx.merge(graphdef, params, batch_stats, copy=True), training=True)
            output = model(images, labels, dropout_key=dropout_key)
            loss, metrics = compute_losses(
                output, images, labels, config.loss, targets, step=state.step, teacher_scores=taught
            )
            return loss, (metrics, nnx.state(model, nnx.BatchStat))

        params, batch_stats = nnx.split_state(state.params, nnx.Param, nnx.BatchStat)
        (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = tx.update(grads, state.opt_state, params)
        params = nnx.merge_state(optax.apply_updates(params, updates), batch_stats)
        grad_norm = optax.tree.norm(grads)
        # One cheap on-device flag; the loop reads it for every completed step (see on_nonfinite).
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if config.on_nonfinite == "skip":  # drop this update: parameters, batch statistics and optimizer state stay
            params, opt_state = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old), (params, opt_state), (state.params, state.opt_state)
            )
        metrics = {**metrics, "learning_rate": schedule(state.step), "grad_norm": grad_norm, "finite": finite}
        return TrainState(state.step + 1, params, opt_state, state.rng), metrics

    compiled = CompiledOnFirstCall(jax.jit(train_step, donate_argnums=0))
    if not teachers:
        return compiled
    teacher_params = tuple(params for _, params in teachers)

    def distilling_step(state: TrainState, images, labels, targets=None):
        return compiled(state, images, labels, targets, teacher_params)

    return distilling_step


class CompiledOnFirstCall:
    """A jitted function compiled ahead of its first execution, for the arguments of its first call.

    The compiler's freed memory goes back to the system (:func:`release_free_memory`) before the
    first step runs, so that the step's buffers do not land on top of it: with CapsNet at batch 128
    the training process's peak resident memory drops by about a quarter (experiments/bench_cpu.md).
    Calls with the first call's shapes, dtypes and shardings run the compiled executable; any other
    call goes through ``jax.jit`` as usual (it compiles again for those).
    """

    def __init__(self, jitted):
        self.jitted, self.executable = jitted, None

    def __call__(self, *args):
        if self.executable is None:
            self.executable = self.jitted.lower(*args).compile()
            release_free_memory()
        try:
            return self.executable(*args)
        except (TypeError, ValueError):  # other types or shardings than the first call's: refused before running
            return self.jitted(*args)

    def lower(self, *args):
        """``jax.jit``'s ``lower``: the step lowered for ``args`` (to compile or analyse it)."""
        return self.jitted.lower(*args)


def make_eval_step(graphdef: nnx.GraphDef, config: TrainConfig) -> Callable:
    """Jitted ``(params, images uint8, labels, valid bool) -> {correct, loss_sum, count}``."""

    def eval_step(params, images, labels, valid):
        output = with_mode(nnx.merge(graphdef, params), training=False)(to_float(images), reconstruct=False)
        correct = correct_predictions(output.scores, labels) & valid
        per_example = classification_loss(output, labels, config.loss)
        return {
            "correct": jnp.sum(correct),
            "loss_sum": jnp.sum(jnp.where(valid, per_example, 0.0)),
            "count": jnp.sum(valid),
        }

    return jax.jit(eval_step)


def make_classify_step(graphdef: nnx.GraphDef) -> Callable:
    """Jitted ``(params, images uint8 [b, h, w, c]) -> scores [b, classes]``: inference, no decoder."""

    def classify_step(params, images):
        return with_mode(nnx.merge(graphdef, params), training=False)(to_float(images), reconstruct=False).scores

    return jax.jit(classify_step)
