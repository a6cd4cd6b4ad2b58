import numpy as np
import pytest

from capsjax.data.idx import IDXError, write_idx
from capsjax.data.pipeline import epoch_permutation, eval_batches, prefetch, train_batches
from capsjax.data.registry import load_split
from capsjax.data.sources import DataNotFoundError, load_dataset
from helpers import write_fake_mnist


def test_real_mnist_files(real_mnist_dir):
    train = load_dataset("mnist", "train", data_dir=real_mnist_dir)
    test = load_dataset("mnist", "test", data_dir=real_mnist_dir)
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert test.labels.shape == (10000,)
    np.testing.assert_allclose(train.images.mean() / 255.0, 0.1306604762738429, rtol=1e-9)
    np.testing.assert_array_equal(np.bincount(train.labels)[:3], [5923, 6742, 5958])
    np.testing.assert_array_equal(np.bincount(test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_env_var_and_parent_folder(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("CAPSJAX_DATA_DIR", str(tmp_path))
    data = load_dataset("fashion_mnist", "test")
    assert len(data) == 64 and data.source.endswith("fashion-mnist")
    assert data.class_names[0] == "T-shirt/top" and len(data.class_names) == 10


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSJAX_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path / "system")
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("kmnist", "train")
    message = str(info.value)
    assert "nowhere" in message and "system" in message and "--data-dir" in message
    assert "tensorflow-datasets" in message or "tfds" in message


@pytest.mark.parametrize("layout", ["missing", "empty", "other_files"])
def test_an_explicit_data_folder_without_the_data_is_an_error_not_a_fallback(tmp_path, monkeypatch, layout):
    """`--data-dir DIR` reads DIR only: a folder that does not exist or holds no IDX files is an error
    naming it, even where $CAPSJAX_DATA_DIR, the cache and the system folder all hold the dataset."""
    for place in ("env", "cache", "system"):
        write_fake_mnist(tmp_path / place / "mnist", test=8)
    monkeypatch.setenv("CAPSJAX_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setattr("capsjax.data.sources.DEFAULT_CACHE", tmp_path / "cache")
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr("capsjax.data.sources.fetch_dataset", lambda name: pytest.fail("downloaded"))
    assert len(load_dataset("mnist", "test")) == 8  # without a data folder: the environment's
    given = tmp_path / "given"
    if layout != "missing":
        given.mkdir()
    if layout == "other_files":
        (given / "notes.txt").write_text("no data here")
        (given / "mnist").mkdir()
    with pytest.raises(DataNotFoundError, match=f"^{given}: ") as info:
        load_dataset("mnist", "test", data_dir=given)
    assert "\n" not in str(info.value)
    with pytest.raises(DataNotFoundError, match=str(given)):
        load_split("multimnist", "test", data_dir=given, num_examples=4)
    with pytest.raises(DataNotFoundError, match="^'': the mnist data folder given"):  # an unset shell variable
        load_dataset("mnist", "test", data_dir="")


def test_an_explicit_cifar10_folder_without_batches_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr("capsjax.data.sources.fetch_dataset", lambda name: pytest.fail("downloaded"))
    for given in (tmp_path / "missing", tmp_path):
        with pytest.raises(DataNotFoundError, match=f"^{given}: the cifar10 data folder given"):
            load_split("cifar10", "test", data_dir=given)


def test_mismatched_counts(tmp_path):
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(63, np.uint8))
    with pytest.raises(IDXError, match="64 images but .* has 63 labels"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_bad_names():
    with pytest.raises(ValueError, match="unknown name 'cifar'"):
        load_dataset("cifar", "train")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", "validation")


def test_shuffle_is_a_function_of_seed_and_epoch():
    a = epoch_permutation(100, seed=1, epoch=0)
    np.testing.assert_array_equal(a, epoch_permutation(100, seed=1, epoch=0))
    assert not np.array_equal(a, epoch_permutation(100, seed=1, epoch=1))
    assert not np.array_equal(a, epoch_permutation(100, seed=2, epoch=0))


def test_train_batches_resume_mid_epoch(tmp_path):
    data = load_dataset("mnist", "train", data_dir=write_fake_mnist(tmp_path))
    full = list(train_batches(data, batch_size=32, seed=0, epoch=3))
    assert len(full) == 8
    resumed = list(train_batches(data, batch_size=32, seed=0, epoch=3, start=5))
    for (a, la), (b, lb) in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_eval_batches_pad_and_mask(tmp_path):
    data = load_dataset("mnist", "test", data_dir=write_fake_mnist(tmp_path))
    batches = list(eval_batches(data, batch_size=48))
    assert [b[0].shape[0] for b in batches] == [48, 48]
    assert batches[1][2].sum() == 16


def test_prefetch_keeps_order_and_reraises():
    assert list(prefetch(iter(range(10)), lambda x: x * 2, size=2)) == [2 * k for k in range(10)]

    def broken():
        yield 1
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        list(prefetch(broken(), lambda x: x))


class _FakeBuilder:
    def __init__(self, prepared):
        self.prepared = prepared
        self.downloaded = False

    def is_prepared(self):
        return self.prepared

    def download_and_prepare(self):
        self.downloaded = True


def test_tfds_offline_fails_fast_with_the_reason(tmp_path, monkeypatch):
    import sys
    import types

    builder = _FakeBuilder(prepared=False)
    fake = types.SimpleNamespace(builder=lambda name: builder)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    monkeypatch.setattr("capsjax.data.sources._online", lambda: False)
    monkeypatch.setenv("CAPSJAX_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path / "system")
    with pytest.raises(DataNotFoundError, match="not in the tfds cache and the network is unreachable"):
        load_dataset("kmnist", "test")
    assert not builder.downloaded


def test_a_folder_named_for_another_dataset_is_not_used(tmp_path, monkeypatch):
    monkeypatch.delenv("CAPSJAX_DATA_DIR", raising=False)
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr("capsjax.data.sources._load_tfds", lambda name, split: (_ for _ in ()).throw(ImportError()))
    mnist = write_fake_mnist(tmp_path / "mnist")
    assert len(load_dataset("mnist", "test", data_dir=mnist)) == 64
    assert len(load_dataset("mnist", "test", data_dir=tmp_path)) == 64  # parent with mnist/ inside
    with pytest.raises(DataNotFoundError, match="mnist/ is another dataset's"):
        load_dataset("fashion_mnist", "test", data_dir=mnist)
    fashion = write_fake_mnist(tmp_path / "fashion-mnist", test=8)
    assert len(load_dataset("fashion_mnist", "test", data_dir=tmp_path)) == 8  # the dash spelling
    assert len(load_dataset("fashion_mnist", "test", data_dir=fashion)) == 8
