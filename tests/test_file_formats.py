"""Datasets in files: image folders, .npz, CIFAR, SVHN, smallNORB (small files written here), format
detection, validation errors naming the file, and training on such data with the model sized to it."""

import json
import pathlib
import pickle

import numpy as np
import pytest
from PIL import Image

from capsjax.data.file_formats import DataFormatError, detect_format, read_norb_matrix, read_split
from capsjax.errors import DataNotFoundError
from helpers import tiny_config, write_norb

rng = np.random.default_rng(0)


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


# --- image folders ---


def test_image_folder_with_train_and_test(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for label, name in enumerate(["cat", "ant"]):  # labels follow sorted names: ant = 0, cat = 1
            for k in range(n):
                write_png(tmp_path / split / name / f"{k}.png", np.full((6, 5, 3), 40 * label + k, np.uint8))
    assert detect_format(tmp_path) == "image_folder"
    train = read_split(tmp_path, "train")
    assert train.images.shape == (6, 6, 5, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1])
    assert train.images[0, 0, 0, 0] == 40 and train.images[3, 0, 0, 0] == 0  # "ant" was written as label 1
    assert len(read_split(tmp_path, "test")) == 4


def test_image_folder_split_by_a_seeded_fraction(tmp_path):
    for name in ("a", "b"):
        for k in range(10):
            write_png(tmp_path / name / f"{k}.png", np.full((4, 4, 1), k, np.uint8))
    train, test = (read_split(tmp_path, split, test_fraction=0.2, seed=3) for split in ("train", "test"))
    assert (len(train), len(test)) == (16, 4) and train.images.shape[1:] == (4, 4, 1)
    pixels = lambda d, label: set(d.images[d.labels == label, 0, 0, 0].tolist())
    for label in (0, 1):  # the two splits partition each class
        assert pixels(train, label) | pixels(test, label) == set(range(10))
        assert not pixels(train, label) & pixels(test, label)
    again = read_split(tmp_path, "test", test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again.images, test.images)
    other = read_split(tmp_path, "test", test_fraction=0.2, seed=4)
    assert not np.array_equal(other.images, test.images)


def test_image_folder_errors_name_the_file(tmp_path):
    write_png(tmp_path / "a" / "0.png", np.zeros((4, 4, 1), np.uint8))
    write_png(tmp_path / "a" / "1.png", np.zeros((4, 4, 1), np.uint8))
    (tmp_path / "b").mkdir()
    with pytest.raises(DataFormatError, match=r"b: an empty class folder"):
        read_split(tmp_path, "train")
    (tmp_path / "b" / "0.png").write_bytes(b"not a png")
    (tmp_path / "b" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"b/0\.png: not a readable image"):
        read_split(tmp_path, "train", test_fraction=0.5)
    write_png(tmp_path / "b" / "0.png", np.zeros((5, 4, 1), np.uint8))
    write_png(tmp_path / "b" / "1.png", np.zeros((5, 4, 1), np.uint8))
    with pytest.raises(DataFormatError, match=r"size 4x5 differs from 4x4"):
        read_split(tmp_path, "train", test_fraction=0.5)


# --- .npz ---


def test_npz_keras_layout(tmp_path):
    path = tmp_path / "data.npz"
    x_train = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    np.savez(path, x_train=x_train, y_train=np.arange(5), x_test=x_train[:2], y_test=np.array([[1], [2]]))
    assert detect_format(path) == "npz"
    train = read_split(path, "train")
    assert train.images.shape == (5, 8, 8, 1) and train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.images[..., 0], x_train)
    np.testing.assert_array_equal(read_split(path, "test").labels, [1, 2])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((2, 4, 4), np.uint8)}, r"missing \['y_train'\]"),
        ({"x_train": np.zeros((2, 4, 4), np.float32), "y_train": np.zeros(2, int)}, "expected uint8 images"),
        ({"x_train": np.zeros((2, 4, 4), np.uint8), "y_train": np.zeros(3, int)}, "2 images but 3 labels"),
        ({"x_train": np.zeros((2, 4, 4), np.uint8), "y_train": np.array([0, -1])}, "negative label"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match=message):
        read_split(path, "train")


# --- CIFAR ---


def write_cifar10(folder, n=4):
    folder.mkdir(parents=True)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[0, :1024] = 200  # first example: red plane 200
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(range(n))}, f)


def test_cifar10_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    assert detect_format(folder) == "cifar"
    train = read_split(folder, "train")
    assert train.images.shape == (20, 32, 32, 3) and len(read_split(folder, "test")) == 4
    assert np.all(train.images[0, :, :, 0] == 200)  # channel-last: the red plane is channel 0
    np.testing.assert_array_equal(train.labels[:4], [0, 1, 2, 3])


def test_cifar100_fine_labels_and_range(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, labels in (("train", [5, 99]), ("test", [0, 100])):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": labels}, f)
    (folder / "meta").write_bytes(pickle.dumps({}))
    np.testing.assert_array_equal(read_split(folder, "train").labels, [5, 99])
    with pytest.raises(DataFormatError, match=r"test: label 100 out of range 0\.\.99"):
        read_split(folder, "test")


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    import os

    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataFormatError, match=r"data_batch_1: not a CIFAR python batch \(refusing to load"):
        read_split(folder, "train")
    assert not (tmp_path / "pwned").exists()


# --- SVHN ---


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    x = rng.integers(0, 256, (32, 32, 3, 3), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [9]], np.uint8)})
    assert detect_format(tmp_path) == "svhn"
    train = read_split(tmp_path, "train")
    assert train.images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(train.images[1], x[..., 1])
    np.testing.assert_array_equal(train.labels, [0, 1, 9])  # 10 is the digit 0
    with pytest.raises(DataFormatError, match=r"test_32x32\.mat: missing SVHN file"):
        read_split(tmp_path, "test")


# --- smallNORB ---


def test_smallnorb_matrices(tmp_path):
    images = rng.integers(0, 256, (3, 2, 8, 8), dtype=np.uint8)
    for tag in ("training", "testing"):
        write_norb(tmp_path / f"smallnorb-5x46789x9x18x6x2x96x96-{tag}-dat.mat", images, 0x1E3D4C55)
        write_norb(
            tmp_path / f"smallnorb-5x46789x9x18x6x2x96x96-{tag}-cat.mat", np.array([0, 4, 2], np.int32), 0x1E3D4C54
        )
    assert detect_format(tmp_path) == "smallnorb"
    train = read_split(tmp_path, "train")
    np.testing.assert_array_equal(train.images[..., 0], images[:, 0])  # the left camera
    np.testing.assert_array_equal(train.labels, [0, 4, 2])
    bad = tmp_path / "bad-dat.mat"
    bad.write_bytes(b"\x00" * 32)
    with pytest.raises(DataFormatError, match="bad-dat.mat: not a smallNORB matrix"):
        read_norb_matrix(bad)
    truncated = tmp_path / "short-dat.mat"
    truncated.write_bytes((tmp_path / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat").read_bytes()[:-5])
    with pytest.raises(DataFormatError, match="the header says"):
        read_norb_matrix(truncated)


def test_detect_format_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="missing: no such file"):
        detect_format(tmp_path / "missing")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataFormatError, match="unknown format"):
        detect_format(tmp_path / "x.csv")


# --- training on files, the model sized to the data ---


def test_train_on_an_npz_of_colour_images_sizes_the_model(tmp_path):
    from capsjax.cli import main
    from capsjax.training.config import DataConfig
    from capsjax.training.loop import train_and_evaluate

    n = 96
    labels = rng.integers(0, 3, n)
    x = np.zeros((n, 20, 20, 3), np.uint8)
    for k, label in enumerate(labels):  # class = which colour channel is bright
        x[k, 4:16, 4:16, label] = 255
    path = tmp_path / "colours.npz"
    np.savez(path, x_train=x[:64], y_train=labels[:64], x_test=x[64:], y_test=labels[64:])
    config = tiny_config(data=DataConfig(path=str(path)), epochs=1)
    summary = train_and_evaluate(config, tmp_path / "run", progress=False)
    assert summary["status"] == "completed"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["capsnet"]["image_shape"] == [20, 20, 3] and saved["capsnet"]["num_classes"] == 3
    assert main(["eval", "--workdir", str(tmp_path / "run")]) == 0
    assert main(["eval", "--workdir", str(tmp_path / "run"), "--data", str(path)]) == 0


def test_smallnorb_recipe_resize_crop_and_a_sized_model(tmp_path):
    """The smallNORB config's preprocessing on stand-in files: 96 -> 48 resize, random 32x32 crops in
    training, the centre crop in testing, a model sized to 32x32x1 and 5 classes."""
    import dataclasses

    from capsjax.data.registry import load_split
    from capsjax.training.config import load_config_file
    from capsjax.training.loop import train_and_evaluate

    n = 40
    images = np.zeros((n, 2, 96, 96), np.uint8)
    labels = (np.arange(n) % 5).astype(np.int32)
    for k, label in enumerate(labels):
        images[k, 0, 20 * label : 20 * label + 16, 30:66] = 255
    for tag in ("training", "testing"):
        write_norb(tmp_path / f"smallnorb-5x46789x9x18x6x2x96x96-{tag}-dat.mat", images, 0x1E3D4C55)
        write_norb(tmp_path / f"smallnorb-5x46789x9x18x6x2x96x96-{tag}-cat.mat", labels, 0x1E3D4C54)
    test = load_split("unused", "test", path=tmp_path, resize=48, crop=32)
    train = load_split("unused", "train", path=tmp_path, resize=48, crop=32)
    assert test.images.shape == (n, 32, 32, 1) and train.images.shape == (n, 48, 48, 1)
    np.testing.assert_array_equal(test.images, train.images[:, 8:40, 8:40])  # the centre window
    np.testing.assert_array_equal(train.images[0, :8, 15:33, 0], 255)  # 2x2 box average of the 96x96 image

    config = load_config_file(str(pathlib.Path(__file__).parents[1] / "experiments" / "configs" / "smallnorb.py"))
    assert (config.data.resize, config.data.crop, config.data.max_shift) == (48, 32, 0)
    small = dataclasses.replace(
        tiny_config(epochs=1, batch_size=8, eval_batch_size=8),
        data=dataclasses.replace(config.data, path=str(tmp_path)),
    )
    summary = train_and_evaluate(small, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["status"] == "completed"
    assert saved["capsnet"]["image_shape"] == [32, 32, 1] and saved["capsnet"]["num_classes"] == 5
    assert saved["class_names"] == ["animal", "human", "airplane", "truck", "car"]


def test_cli_data_flag_takes_a_name_or_a_path(tmp_path, monkeypatch):
    from capsjax.cli import with_data

    config = tiny_config()
    named = with_data(config, "fashion_mnist")
    assert (named.data.name, named.data.path) == ("fashion_mnist", None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.npz").write_bytes(b"")
    assert with_data(config, "mine.npz").data.path == str(tmp_path / "mine.npz")
    with pytest.raises(DataNotFoundError, match="--data nowhere: neither a dataset name .* nor an existing path"):
        with_data(config, "nowhere")


def smoke_sized(config, **data):
    """A config file's recipe (data preprocessing, routing) with a network small enough for a test."""
    import dataclasses

    capsnet = dataclasses.replace(config.capsnet, conv_channels=16, primary_types=4, class_dim=8, decoder_hidden=(32,))
    return dataclasses.replace(
        config,
        capsnet=capsnet,
        data=dataclasses.replace(config.data, **data),
        epochs=1,
        batch_size=16,
        eval_batch_size=16,
        checkpoint_every_steps=100,
        log_every_steps=100,
    )


def config_file(name):
    from capsjax.training.config import load_config_file

    return load_config_file(str(pathlib.Path(__file__).parents[1] / "experiments" / "configs" / f"{name}.py"))


def test_cifar10_config_at_smoke_size(tmp_path):
    from capsjax.training.loop import train_and_evaluate

    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", n=8)
    config = config_file("cifar10")
    assert (config.data.name, config.data.crop, config.capsnet.primary_types) == ("cifar10", 24, 64)
    assert config.capsnet.routing.leaky
    summary = train_and_evaluate(smoke_sized(config), tmp_path / "run", data_dir=tmp_path / "data", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["status"] == "completed" and saved["capsnet"]["image_shape"] == [24, 24, 3]
    assert saved["class_names"][:3] == ["airplane", "automobile", "bird"] and saved["capsnet"]["num_classes"] == 10


def test_svhn_config_at_smoke_size(tmp_path):
    from scipy.io import savemat

    from capsjax.training.loop import train_and_evaluate

    for split, n in (("train", 32), ("test", 16)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": rng.integers(1, 11, (n, 1)).astype(np.uint8)})
    config = config_file("svhn")
    assert config.capsnet.primary_types == 64
    summary = train_and_evaluate(smoke_sized(config, path=str(tmp_path)), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["status"] == "completed" and saved["capsnet"]["image_shape"] == [32, 32, 3]


def write_coloured_shapes(root, per_class, seed):
    """32x32 RGB images of 4 classes: a red square, a green bar, a blue cross, a yellow frame, placed at
    random with noise."""
    local = np.random.default_rng(seed)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for label, name in enumerate(["red_square", "green_bar", "blue_cross", "yellow_frame"]):
        for k in range(per_class):
            image = local.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            r, c = local.integers(4, 16, 2)
            mask = np.zeros((32, 32), bool)
            if label == 0:
                mask[r : r + 10, c : c + 10] = True
            elif label == 1:
                mask[r : r + 14, c + 4 : c + 7] = True
            elif label == 2:
                mask[r + 5 : r + 7, c : c + 12] = mask[r : r + 12, c + 5 : c + 7] = True
            else:
                mask[r : r + 12, c : c + 12] = True
                mask[r + 2 : r + 10, c + 2 : c + 10] = False
            image[mask] = colours[label]
            write_png(root / name / f"{k}.png", image)


def test_rgb_image_folder_end_to_end_well_above_chance(tmp_path):
    import dataclasses

    from capsjax.analysis.classify import classify_files
    from capsjax.training.config import OptimConfig
    from capsjax.training.loop import train_and_evaluate

    write_coloured_shapes(tmp_path / "shapes" / "train", per_class=40, seed=0)
    write_coloured_shapes(tmp_path / "shapes" / "test", per_class=10, seed=1)
    config = dataclasses.replace(
        smoke_sized(config_file("mnist"), path=str(tmp_path / "shapes")),
        epochs=3,
        optim=OptimConfig(learning_rate=3e-3),
    )
    summary = train_and_evaluate(config, tmp_path / "run", progress=False)
    assert summary["test_accuracy"] >= 0.75, summary  # chance is 0.25
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["class_names"] == ["blue_cross", "green_bar", "red_square", "yellow_frame"]
    assert saved["capsnet"]["image_shape"] == [32, 32, 3] and saved["capsnet"]["num_classes"] == 4
    big = tmp_path / "big.png"
    Image.open(tmp_path / "shapes" / "test" / "red_square" / "0.png").resize((64, 64)).save(big)
    with pytest.raises(ValueError, match="expected a 32x32 image .*--resize"):
        classify_files(tmp_path / "run", [str(big)])
    [result] = classify_files(tmp_path / "run", [str(big)], resize=True)
    assert result["class_name"] == ["blue_cross", "green_bar", "red_square", "yellow_frame"][result["class"]]


def test_cifar100_trains_end_to_end(tmp_path):
    from capsjax.training.loop import train_and_evaluate

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 32), ("test", 16)):
        with open(folder / name, "wb") as f:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            pickle.dump({b"data": data, b"fine_labels": list(rng.integers(0, 100, n))}, f)
    (folder / "meta").write_bytes(pickle.dumps({}))
    summary = train_and_evaluate(smoke_sized(config_file("mnist"), path=str(folder)), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["status"] == "completed" and saved["capsnet"]["image_shape"] == [32, 32, 3]
    assert saved["capsnet"]["num_classes"] == 1 + max(
        max(pickle.loads((folder / s).read_bytes())[b"fine_labels"]) for s in ("train", "test")
    )


def test_fashion_mnist_from_the_system_folder_keeps_working(tmp_path, monkeypatch):
    from capsjax.data.registry import load_split
    from helpers import write_fake_mnist

    write_fake_mnist(tmp_path / "fashion-mnist")  # Debian's dataset-fashion-mnist layout
    monkeypatch.delenv("CAPSJAX_DATA_DIR", raising=False)
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path)
    data = load_split("fashion_mnist", "test")
    assert len(data) == 64 and data.source == str(tmp_path / "fashion-mnist")


def test_smallnorb_viewpoints_come_from_the_info_files(tmp_path):
    """Each image's instance, elevation and azimuth in degrees, and lighting, as the viewpoint protocol needs."""
    images = rng.integers(0, 256, (3, 2, 8, 8), dtype=np.uint8)
    info = np.array([[4, 0, 0, 5], [9, 8, 34, 0], [0, 3, 18, 2]], np.int32)
    for tag in ("training", "testing"):
        write_norb(tmp_path / f"smallnorb-5x46789x9x18x6x2x96x96-{tag}-dat.mat", images, 0x1E3D4C55)
        write_norb(
            tmp_path / f"smallnorb-5x46789x9x18x6x2x96x96-{tag}-cat.mat", np.array([0, 4, 2], np.int32), 0x1E3D4C54
        )
        write_norb(tmp_path / f"smallnorb-5x46789x9x18x6x2x96x96-{tag}-info.mat", info, 0x1E3D4C54)
    factors = read_split(tmp_path, "test").factors
    np.testing.assert_array_equal(factors["instance"], [4, 9, 0])
    np.testing.assert_array_equal(factors["elevation"], [30, 70, 45])
    np.testing.assert_array_equal(factors["azimuth"], [0, 340, 180])
    np.testing.assert_array_equal(factors["lighting"], [5, 0, 2])
    odd = info.copy()
    odd[0, 2] = 3
    write_norb(tmp_path / "smallnorb-5x46789x9x18x6x2x96x96-training-info.mat", odd, 0x1E3D4C54)
    with pytest.raises(DataFormatError, match="training-info.mat: azimuth values outside 0..34, even"):
        read_split(tmp_path, "train")
