import jax.numpy as jnp
import numpy as np
import pytest

from capsjax import label_mask, length_mask, mask_capsules


def test_masks():
    np.testing.assert_array_equal(label_mask(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(length_mask(jnp.array([[0.1, 0.7, 0.3]])), [[0, 1, 0]])


def test_mask_capsules_keeps_only_selected():
    capsules = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(mask_capsules(capsules, jnp.array([0.0, 1.0, 0.0])), [0, 0, 2, 3, 0, 0])
    with pytest.raises(ValueError, match=r"mask: expected shape \[3\]"):
        mask_capsules(capsules, jnp.ones(4))
