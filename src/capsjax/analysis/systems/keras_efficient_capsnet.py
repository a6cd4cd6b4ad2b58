"""Efficient-CapsNet's MNIST network in Keras 3 (TensorFlow backend), trained as its official code does: a peer.

Our transcription of Mazzia, Salvetti & Chiaberge (2021) after the official code (EscVM/Efficient-CapsNet:
``models/efficient_capsnet_graph_mnist.py``, ``utils/layers.py``, ``utils/tools.py``, ``config.json``):
four He-normal convolutions (32@5x5, 64@3x3, 64@3x3, 128@3x3 stride 2), each ReLU then batch norm;
primary capsules from a 9x9 convolution with one group per channel (``groups=128``), cut into 16
capsules of 8D and squashed by ``(1 - 1/(e^|s| + eps)) s / (|s| + eps)``; ``FCCaps``, the
self-attention routing with its weights ``W [10, 16, 8, 16]`` (He-normal) and log priors
``b [10, 16, 1]`` (zeros); capsule lengths; a decoder 512 -> 1024 -> 784 fed by the capsules masked
by the true label. Training as ``Model.train`` of the official code: ``compile(Adam(5e-4),
loss=[marginLoss, "mse"], loss_weights=[1, 0.392])`` in graph mode without XLA (Keras 2's default,
which the official code ran), here stepped by ``train_on_batch``; its batch is 16 (``config.json``).
Keras 3 runs the grouped convolution through XLA itself (its TensorFlow backend does so for every
grouped convolution). Inference is ``predict_on_batch`` of the classifier (image -> capsule lengths).
The reported ``parameters`` are the trainable ones (1,573,168; batch norm's 1,152 moving statistics
are not parameters). Run as a script (see ``protocol.py``); ``--bfloat16`` sets Keras's
``mixed_bfloat16`` policy. Needs ``pip install 'capsjax[bench]'``.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402
from protocol import parse_args, report, time_steps  # noqa: E402  (protocol.py sits beside this script)

EPS = 10e-21  # the official config's "eps"
LEARNING_RATE = 5e-4  # config.json "lr"
RECONSTRUCTION_WEIGHT = 0.392  # config.json "lmd_gen": 0.0005 x 784 on the per-pixel mean squared error
OFFICIAL_BATCH_SIZE = 16  # config.json "batch_size"


def squash(s, eps=EPS):
    """Efficient-CapsNet's squash over the last axis, as the official ``Squash`` layer computes it."""
    n = ops.sqrt(ops.sum(ops.square(s), axis=-1, keepdims=True))
    return (1.0 - 1.0 / (ops.exp(n) + eps)) * (s / (n + eps))


class PrimaryCaps(layers.Layer):
    """Depthwise (``groups=channels``) convolution -> ``[batch, num_caps, caps_dim]`` -> squash."""

    def __init__(self, channels, kernel_size, num_caps, caps_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_caps, self.caps_dim = num_caps, caps_dim
        self.dw_conv = layers.Conv2D(channels, kernel_size, groups=channels, padding="valid", name="dw_conv")

    def build(self, input_shape):
        self.dw_conv.build(input_shape)

    def call(self, inputs):
        return squash(ops.reshape(self.dw_conv(inputs), (-1, self.num_caps, self.caps_dim)))


class FCCaps(layers.Layer):
    """Class capsules by self-attention routing (the official ``FCCaps``; paper eq. 4-7).

    ``u [b, out, in, d] = inputs . W``; agreements ``a [b, out, in] = u_in . sum_k u_k / sqrt(d)``;
    ``c = softmax over out (a) + b``; ``v = squash(sum_in c u)``.
    """

    def __init__(self, num_caps, caps_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_caps, self.caps_dim = num_caps, caps_dim

    def build(self, input_shape):
        in_caps, in_dim = input_shape[-2], input_shape[-1]
        self.W = self.add_weight(
            shape=(self.num_caps, in_caps, in_dim, self.caps_dim), initializer="he_normal", name="W"
        )
        self.b = self.add_weight(shape=(self.num_caps, in_caps, 1), initializer="zeros", name="b")

    def call(self, inputs):
        u = ops.einsum("bji,kjiz->bkjz", inputs, self.W)  # [batch, out, in, out_dim]
        c = ops.einsum("bkiz,bkjz->bki", u, u)[..., None]  # [batch, out, in, 1]
        c = c / ops.sqrt(ops.cast(self.caps_dim, c.dtype))
        c = ops.softmax(c, axis=1) + ops.cast(self.b, c.dtype)  # softmax over the output capsules
        return squash(ops.sum(u * c, axis=-2))  # [batch, out, out_dim]


class Length(layers.Layer):
    def call(self, inputs):
        return ops.sqrt(ops.sum(ops.square(inputs), axis=-1) + keras.backend.epsilon())


class Mask(layers.Layer):
    def call(self, inputs):
        capsules, mask = inputs
        return ops.reshape(capsules * ops.expand_dims(mask, -1), (-1, capsules.shape[1] * capsules.shape[2]))


def margin_loss(y_true, y_pred):
    """The official ``marginLoss``: summed over classes, mean over the batch."""
    loss = y_true * ops.square(ops.maximum(0.0, 0.9 - y_pred)) + 0.5 * (1 - y_true) * ops.square(
        ops.maximum(0.0, y_pred - 0.1)
    )
    return ops.mean(ops.sum(loss, axis=1))


def efficient_capsnet(input_shape=(28, 28, 1)) -> keras.Model:
    """Images -> (class capsules ``[batch, 10, 16]``, their lengths ``[batch, 10]``)."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, (channels, kernel, stride) in enumerate(((32, 5, 1), (64, 3, 1), (64, 3, 1), (128, 3, 2))):
        x = layers.Conv2D(channels, kernel, stride, activation="relu", kernel_initializer="he_normal", name=f"conv{i}")(
            x
        )
        x = layers.BatchNormalization(name=f"norm{i}")(x)
    x = PrimaryCaps(128, 9, 16, 8, name="primary_caps")(x)
    digit_caps = FCCaps(10, 16, name="fc_caps")(x)
    lengths = Length(name="length_capsnet_output")(digit_caps)
    return keras.Model(inputs, [digit_caps, lengths], name="Efficient_CapsNet")


def generator(input_shape=(28, 28, 1)) -> keras.Model:
    """Masked capsules ``[batch, 160]`` -> images."""
    return keras.Sequential(
        [
            keras.Input((16 * 10,)),
            layers.Dense(512, activation="relu", kernel_initializer="he_normal"),
            layers.Dense(1024, activation="relu", kernel_initializer="he_normal"),
            layers.Dense(int(np.prod(input_shape)), activation="sigmoid", kernel_initializer="glorot_normal"),
            layers.Reshape(input_shape, name="out_generator"),
        ],
        name="Generator",
    )


def build_models(input_shape=(28, 28, 1)):
    """``(train_model [images, one-hot labels] -> [lengths, reconstructions], classifier images -> lengths,
    capsnet images -> [capsules, lengths], decoder)``, sharing their layers."""
    inputs = keras.Input(input_shape)
    y_true = keras.Input((10,))
    capsnet = efficient_capsnet(input_shape)
    decoder = generator(input_shape)
    digit_caps, lengths = capsnet(inputs)
    train_model = keras.Model([inputs, y_true], [lengths, decoder(Mask()([digit_caps, y_true]))])
    classifier = keras.Model(inputs, lengths)
    return train_model, classifier, capsnet, decoder


def compile_for_training(train_model: keras.Model) -> None:
    """The official ``Model.train`` compile (its accuracy metric left out), graph mode without XLA."""
    train_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss=[margin_loss, "mse"],
        loss_weights=[1.0, RECONSTRUCTION_WEIGHT],
        jit_compile=False,
    )


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def main(argv=None):
    args = parse_args(argv)
    if args.bfloat16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    train_model, classifier, _, _ = build_models()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch)]
    if args.mode == "train":
        compile_for_training(train_model)
        step = lambda: train_model.train_on_batch([x, y], [y, x])
    else:
        classifier.compile(jit_compile=False)
        step = lambda: classifier.predict_on_batch(x)
    times = time_steps(step, steps=args.steps, warmup=args.warmup)
    report(
        "keras",
        f"keras {keras.__version__}, tensorflow backend",
        args,
        times,
        parameters=trainable_parameters(train_model),
    )


if __name__ == "__main__":
    main()
