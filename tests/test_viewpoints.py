"""The viewpoints dataset: rendered toys, their factors, the split protocols and the cache."""

import itertools

import numpy as np
import pytest

from capsjax.data.dataset import ArrayDataset
from capsjax.data.registry import DATASETS, load_split
from capsjax.data.shapes import CATEGORIES
from capsjax.data.viewpoints import (
    AZIMUTHS,
    ELEVATIONS,
    LIGHTINGS,
    load_viewpoints,
    make_viewpoints,
    viewpoint_split,
)
from capsjax.errors import UsageError

SPLIT_SIZE = 5 * 5 * 18 * 9 * 4


def views(split="train", **subset):
    """A few rendered images, one lighting by default (``subset`` overrides make_viewpoints' arguments)."""
    return make_viewpoints(split, **({"instances": [0 if split == "train" else 5], "lightings": [0]} | subset))


def foreground(images):
    return images[..., 0] > 0


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """Both full splits, generated once into a temporary cache folder: ``(folder, {split: dataset})``."""
    folder = tmp_path_factory.mktemp("viewpoints_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAPSJAX_CACHE_DIR", str(folder))
        yield folder, {split: load_viewpoints(split) for split in ("train", "test")}


def test_generation_is_deterministic():
    subset = dict(categories=[0, 3], instances=[1, 2], azimuths=[0, 100], elevations=[30, 65], lightings=[0, 2])
    first, second = make_viewpoints("train", **subset), make_viewpoints("train", **subset)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    for name in first.factors:
        np.testing.assert_array_equal(first.factors[name], second.factors[name])
    other_seed = make_viewpoints("train", seed=1, **subset)
    assert np.any(first.images != other_seed.images), "the seed chooses the instances' proportions"


@pytest.mark.parametrize("split, instances", [("train", range(5)), ("test", range(5, 10))])
def test_every_combination_once_with_the_stated_values(cached, split, instances):
    data = cached[1][split]
    assert len(data) == SPLIT_SIZE and data.class_names == CATEGORIES
    assert data.labels.dtype == np.int32 and all(v.dtype == np.int32 for v in data.factors.values())
    rows = np.stack([data.labels] + [data.factors[k] for k in ("instance", "azimuth", "elevation", "lighting")], 1)
    expected = set(itertools.product(range(5), instances, range(0, 360, 20), range(30, 75, 5), range(4)))
    assert set(map(tuple, rows.tolist())) == expected
    assert len(np.unique(rows, axis=0)) == SPLIT_SIZE  # none twice
    assert np.any(np.diff(data.labels) != 0)  # stored shuffled: the first images are not all one category


def test_train_and_test_instances_are_disjoint(cached):
    train, test = cached[1]["train"], cached[1]["test"]
    assert set(np.unique(train.factors["instance"])) == {0, 1, 2, 3, 4}
    assert set(np.unique(test.factors["instance"])) == {5, 6, 7, 8, 9}


def test_images_are_48x48_grayscale_with_a_real_foreground(cached):
    for data in cached[1].values():
        assert data.images.shape == (SPLIT_SIZE, 48, 48, 1) and data.images.dtype == np.uint8
        fraction = foreground(data.images).mean((1, 2))
        assert fraction.min() > 0.03 and fraction.max() < 0.7
        for category in range(len(CATEGORIES)):
            assert 0.1 <= fraction[data.labels == category].mean() <= 0.7, CATEGORIES[category]
        assert data.images[data.images > 0].min() >= 30


def test_stored_images_match_their_factors(cached):
    """The shuffle before caching moves factors with their images: re-rendering from factors agrees."""
    data = cached[1]["test"]
    for k in (0, 4321, SPLIT_SIZE - 1):
        f = {name: int(values[k]) for name, values in data.factors.items()}
        one = make_viewpoints(
            "test",
            categories=[int(data.labels[k])],
            instances=[f["instance"]],
            azimuths=[f["azimuth"]],
            elevations=[f["elevation"]],
            lightings=[f["lighting"]],
        )
        difference = np.abs(one.images[0].astype(int) - data.images[k].astype(int))
        assert difference.max() <= 1 and (difference > 0).sum() <= 2


def test_cache_is_written_once_and_reused(cached, monkeypatch):
    folder, first = cached
    assert sorted(p.name for p in folder.iterdir()) == ["viewpoints_test_seed0_v1.npz", "viewpoints_train_seed0_v1.npz"]
    monkeypatch.setenv("CAPSJAX_CACHE_DIR", str(folder))
    monkeypatch.setattr("capsjax.data.viewpoints.render", lambda *a, **k: pytest.fail("rendered again"))
    again = load_viewpoints("train")
    np.testing.assert_array_equal(again.images, first["train"].images)
    np.testing.assert_array_equal(again.factors["azimuth"], first["train"].factors["azimuth"])


def test_registered_loader_takes_a_subset_with_its_factors(cached, monkeypatch):
    monkeypatch.setenv("CAPSJAX_CACHE_DIR", str(cached[0]))
    assert "viewpoints" in DATASETS
    data = load_split("viewpoints", "train", num_examples=100)
    full = cached[1]["train"]
    assert len(data) == 100 and data.class_names == CATEGORIES
    for name, values in data.factors.items():
        np.testing.assert_array_equal(values, full.factors[name][:100])
    on_canvas = load_split("viewpoints", "train", num_examples=10, canvas=56)
    assert on_canvas.images.shape == (10, 56, 56, 1) and len(on_canvas.factors["lighting"]) == 10


@pytest.mark.parametrize(
    "protocol, factor, familiar",
    [
        ("azimuth", "azimuth", {300, 320, 340, 0, 20, 40}),
        ("elevation", "elevation", {30, 35, 40}),
    ],
)
def test_viewpoint_split_selects_familiar_and_novel(cached, protocol, factor, familiar):
    data = cached[1]["test"]
    seen, novel = viewpoint_split(data, protocol, "familiar"), viewpoint_split(data, protocol, "novel")
    assert set(np.unique(seen.factors[factor])) == familiar
    everything = set(AZIMUTHS if factor == "azimuth" else ELEVATIONS)
    assert set(np.unique(novel.factors[factor])) == everything - familiar
    assert len(seen) == SPLIT_SIZE // 3 and len(seen) + len(novel) == SPLIT_SIZE
    k = np.flatnonzero(np.isin(data.factors[factor], list(familiar)))[7]
    np.testing.assert_array_equal(seen.images[7], data.images[k])  # images, labels and factors stay together
    assert seen.labels[7] == data.labels[k] and seen.factors["instance"][7] == data.factors["instance"][k]


def test_viewpoint_split_rejects_unknown_names_and_data_without_factors():
    data = views(categories=[0], azimuths=[0], elevations=[30])
    with pytest.raises(UsageError, match="protocol"):
        viewpoint_split(data, "lighting", "novel")
    with pytest.raises(UsageError, match="part"):
        viewpoint_split(data, "azimuth", "unseen")
    plain = ArrayDataset(data.images, data.labels, "plain")
    with pytest.raises(UsageError, match="no 'azimuth' factor"):
        viewpoint_split(plain, "azimuth", "novel")
    with pytest.raises(UsageError, match="split"):
        make_viewpoints("validation")
    with pytest.raises(UsageError, match="lightings"):
        make_viewpoints("train", lightings=[4])


@pytest.mark.parametrize("category", range(len(CATEGORIES)))
def test_silhouette_changes_with_azimuth(category):
    masks = foreground(views(categories=[category], azimuths=[0, 90], elevations=[30]).images)
    changed = (masks[0] != masks[1]).sum() / (masks[0] | masks[1]).sum()
    assert changed > 0.3, f"{CATEGORIES[category]}: only {changed:.0%} of the silhouette changed"


def test_lighting_changes_shading_but_not_silhouette():
    data = views(categories=range(5), azimuths=[40], elevations=[45], lightings=LIGHTINGS)
    images = data.images[..., 0].reshape(5, len(LIGHTINGS), 48, 48).astype(int)
    for per_light in images:
        masks = per_light > 0
        assert np.all(masks == masks[0])
        for a, b in itertools.combinations(range(len(LIGHTINGS)), 2):
            assert np.abs(per_light[a] - per_light[b])[masks[0]].mean() > 10


def test_categories_and_instances_differ():
    by_category = foreground(views(azimuths=[60], elevations=[40]).images)
    for a, b in itertools.combinations(range(len(CATEGORIES)), 2):
        overlap = (by_category[a] & by_category[b]).sum() / (by_category[a] | by_category[b]).sum()
        assert overlap < 0.75, f"{CATEGORIES[a]} and {CATEGORIES[b]} look alike ({overlap:.0%} overlap)"
    by_instance = views(instances=[0, 1], azimuths=[60], elevations=[40]).images.reshape(5, 2, 48, 48)
    assert all(np.any(pair[0] != pair[1]) for pair in by_instance)


def test_take_and_select_keep_factors_with_their_images():
    data = views(categories=[1, 2], azimuths=[0, 20, 40], elevations=[30])
    first = data.take(4)
    assert all(len(values) == 4 for values in first.factors.values())
    np.testing.assert_array_equal(first.factors["azimuth"], data.factors["azimuth"][:4])
    chosen = data.select(np.array([5, 1]))
    np.testing.assert_array_equal(chosen.images, data.images[[5, 1]])
    np.testing.assert_array_equal(chosen.factors["azimuth"], data.factors["azimuth"][[5, 1]])
    assert data.take(None) is data
