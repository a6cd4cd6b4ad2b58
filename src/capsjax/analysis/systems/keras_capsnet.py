"""The paper's CapsNet in Keras 3 (TensorFlow backend), written the way Keras users write it: a peer.

Our transcription of Sabour et al. (2017) in the style of the popular Keras CapsNets: Conv2D
layers, a custom routing layer with its weights ``W [10, 1152, 16, 8]``, ``Length`` and ``Mask``
layers, a Dense decoder masked by the true label, the margin loss plus the reconstruction MSE
weighted ``0.0005 * 784`` (= 0.0005 x the summed squared error), Adam, ``train_on_batch`` without
XLA (``jit_compile=False``). Inference is ``predict_on_batch`` of the classifier (image ->
capsule lengths). Run as a script (see ``protocol.py``); ``--bfloat16`` sets Keras's
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


def squash(s, axis=-1):
    squared = ops.sum(ops.square(s), axis=axis, keepdims=True)
    return squared / (1.0 + squared) * s / ops.sqrt(squared + keras.backend.epsilon())


class CapsuleLayer(layers.Layer):
    """Class capsules by dynamic routing (Procedure 1)."""

    def __init__(self, num_capsule, dim_capsule, routings=3, **kwargs):
        super().__init__(**kwargs)
        self.num_capsule, self.dim_capsule, self.routings = num_capsule, dim_capsule, routings

    def build(self, input_shape):
        _, self.input_num_capsule, self.input_dim_capsule = input_shape
        self.W = self.add_weight(
            shape=(self.num_capsule, self.input_num_capsule, self.dim_capsule, self.input_dim_capsule),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="W",
        )

    def call(self, inputs):
        inputs_hat = ops.einsum("jidk,bik->bjid", self.W, inputs)  # [batch, 10, 1152, 16]
        b = ops.zeros_like(inputs_hat[..., 0])  # [batch, 10, 1152]
        for i in range(self.routings):
            c = ops.softmax(b, axis=1)  # over the output capsules
            outputs = squash(ops.einsum("bji,bjid->bjd", c, inputs_hat))
            if i < self.routings - 1:
                b = b + ops.einsum("bjd,bjid->bji", outputs, inputs_hat)
        return outputs


class Length(layers.Layer):
    def call(self, inputs):
        return ops.sqrt(ops.sum(ops.square(inputs), axis=-1) + keras.backend.epsilon())


class Mask(layers.Layer):
    def call(self, inputs):
        capsules, mask = inputs
        return ops.reshape(capsules * ops.expand_dims(mask, -1), (-1, capsules.shape[1] * capsules.shape[2]))


def margin_loss(y_true, y_pred):
    loss = y_true * ops.square(ops.relu(0.9 - y_pred)) + 0.5 * (1 - y_true) * ops.square(ops.relu(y_pred - 0.1))
    return ops.sum(loss, axis=-1)


def build_models(input_shape=(28, 28, 1), n_class=10, routings=3):
    x = layers.Input(shape=input_shape)
    conv1 = layers.Conv2D(256, 9, activation="relu", name="conv1")(x)
    primary = layers.Conv2D(32 * 8, 9, strides=2, name="primarycap_conv2d")(conv1)
    primary = layers.Reshape((-1, 8))(primary)
    primary = layers.Lambda(squash, name="primarycap_squash")(primary)
    digitcaps = CapsuleLayer(n_class, 16, routings, name="digitcaps")(primary)
    lengths = Length(name="capsnet")(digitcaps)
    y = layers.Input(shape=(n_class,))
    decoder = keras.Sequential(
        [
            layers.Input(shape=(16 * n_class,)),
            layers.Dense(512, activation="relu"),
            layers.Dense(1024, activation="relu"),
            layers.Dense(int(np.prod(input_shape)), activation="sigmoid"),
            layers.Reshape(input_shape),
        ],
        name="decoder",
    )
    train_model = keras.Model([x, y], [lengths, decoder(Mask()([digitcaps, y]))])
    classifier = keras.Model(x, lengths)
    return train_model, classifier


def main(argv=None):
    args = parse_args(argv)
    if args.bfloat16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    train_model, classifier = build_models()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch)]
    if args.mode == "train":
        train_model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=[margin_loss, "mse"],
            loss_weights=[1.0, 0.0005 * 784],
            jit_compile=False,
        )
        step = lambda: train_model.train_on_batch([x, y], [y, x])
    else:
        classifier.compile(jit_compile=False)
        step = lambda: classifier.predict_on_batch(x)
    times = time_steps(step, steps=args.steps, warmup=args.warmup)
    report(
        "keras", f"keras {keras.__version__}, tensorflow backend", args, times, parameters=train_model.count_params()
    )


if __name__ == "__main__":
    main()
