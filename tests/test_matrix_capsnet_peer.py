"""The PyTorch peer of the matrix capsule network (``analysis/systems/torch_matrix_capsnet.py``)
computes what capsjax computes where the two algorithms agree, and both bench scripts run.

Where they agree: EM routing with unit input activations and a fixed inverse temperature, the
receptive fields and votes of a convolutional capsule layer, the class votes without coordinate
addition, the spread loss. Where they differ (checked here too): the peer's M-step cancels the
input activations, so its routing of any activations is capsjax's routing of unit ones.
"""

import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")

from capsjax.nn import ConvCapsules, MatrixCapsNet, MatrixCapsNetConfig, count_params  # noqa: E402
from capsjax.ops.em_routing import em_routing  # noqa: E402
from capsjax.ops.losses import spread_loss  # noqa: E402
from capsjax.ops.matrix_votes import class_votes  # noqa: E402

SYSTEMS = pathlib.Path(__file__).resolve().parents[1] / "src" / "capsjax" / "analysis" / "systems"
sys.path.insert(0, str(SYSTEMS))
import torch_matrix_capsnet as peer  # noqa: E402

IN_CAPS, OUT_CAPS, BATCH = 18, 4, 3


def routing_inputs(seed, activations_low=1.0):
    """Votes ``[batch, in, out, 16]``, activations ``[batch, in]``, beta_u, beta_a ``[out]`` (float32 NumPy)."""
    rng = np.random.default_rng(seed)
    votes = rng.normal(size=(BATCH, IN_CAPS, OUT_CAPS, 16)).astype(np.float32)
    activations = rng.uniform(activations_low, 1.0, size=(BATCH, IN_CAPS)).astype(np.float32)
    beta_u, beta_a = (rng.normal(size=OUT_CAPS).astype(np.float32) for _ in range(2))
    return votes, activations, beta_u, beta_a


def peer_routing(votes, activations, beta_u, beta_a, *, iters, inverse_temperature):
    """The peer's EM routing -> poses ``[batch, out, 16]``, activations ``[batch, out]`` (NumPy)."""
    layer = peer.ConvCaps(B=2, C=OUT_CAPS, K=3, iters=iters, inverse_temperature=inverse_temperature)
    with torch.no_grad():
        layer.beta_u.copy_(torch.from_numpy(beta_u))
        layer.beta_a.copy_(torch.from_numpy(beta_a))
        mu, a_out = layer.caps_em_routing(
            torch.from_numpy(votes), torch.from_numpy(activations)[..., None], OUT_CAPS, layer.eps
        )
    return mu[:, 0].numpy(), a_out.numpy()


def capsjax_routing(votes, activations, beta_u, beta_a, *, iters, inverse_temperature):
    route = lambda v, a: em_routing(
        v, a, beta_u=beta_u, beta_a=beta_a, num_iters=iters, temperatures=(inverse_temperature,) * iters, eps=1e-8
    )
    result = jax.vmap(route)(votes, activations)
    return np.asarray(result.poses), np.asarray(result.activations)


@pytest.mark.parametrize("iters", [1, 2, 3])
@pytest.mark.parametrize("inverse_temperature", [1e-3, 1e-1])
def test_em_routing_of_unit_activations_agrees_with_capsjax(iters, inverse_temperature):
    """Same votes, beta_u, beta_a, fixed lambda and eps: the same poses and activations."""
    votes, activations, beta_u, beta_a = routing_inputs(0)
    kwargs = dict(iters=iters, inverse_temperature=inverse_temperature)
    torch_poses, torch_acts = peer_routing(votes, activations, beta_u, beta_a, **kwargs)
    jax_poses, jax_acts = capsjax_routing(votes, activations, beta_u, beta_a, **kwargs)
    np.testing.assert_allclose(torch_poses, jax_poses, atol=2e-5, rtol=0)
    np.testing.assert_allclose(torch_acts, jax_acts, atol=2e-6, rtol=0)
    assert np.ptp(jax_acts) > 0.01  # the activations differ between outputs: they steer the E-step


def test_peer_routing_cancels_the_input_activations():
    """The peer's M-step renormalises ``r * a_in`` over the outputs: its routing of any activations
    is capsjax's routing of unit ones, and differs from capsjax's routing of the same activations."""
    votes, activations, beta_u, beta_a = routing_inputs(1, activations_low=0.05)
    kwargs = dict(iters=3, inverse_temperature=1e-2)
    torch_poses, torch_acts = peer_routing(votes, activations, beta_u, beta_a, **kwargs)
    unit_poses, unit_acts = capsjax_routing(votes, np.ones_like(activations), beta_u, beta_a, **kwargs)
    np.testing.assert_allclose(torch_poses, unit_poses, atol=2e-5, rtol=0)
    np.testing.assert_allclose(torch_acts, unit_acts, atol=2e-6, rtol=0)
    same_poses, _ = capsjax_routing(votes, activations, beta_u, beta_a, **kwargs)
    assert np.max(np.abs(torch_poses - same_poses)) > 1e-2


def numpy_m_and_e_step(votes, activations, beta_u, beta_a, inverse_temperature, eps=1e-8):
    """One M-step and E-step of the public code, transcribed from its formulas for ONE example."""
    r = np.full(votes.shape[:2], 1.0 / votes.shape[1])
    r = r * activations[:, None]
    r = r / (r.sum(1, keepdims=True) + eps)
    r_sum = r.sum(0)
    coeff = r / (r_sum + eps)
    mu = np.einsum("io,ioh->oh", coeff, votes)
    sigma_sq = np.einsum("io,ioh->oh", coeff, (votes - mu) ** 2) + eps
    cost = ((beta_u[:, None] + 0.5 * np.log(sigma_sq)) * r_sum[:, None]).sum(1)
    a_out = 1 / (1 + np.exp(-inverse_temperature * (beta_a - cost)))
    ln_p = (-((votes - mu) ** 2) / (2 * sigma_sq) - 0.5 * np.log(sigma_sq) - 0.5 * math.log(2 * math.pi)).sum(-1)
    ln_ap = ln_p + np.log(a_out)
    r = np.exp(ln_ap - ln_ap.max(1, keepdims=True))
    return mu, a_out, r / r.sum(1, keepdims=True)


def test_peer_m_and_e_step_follow_the_public_formulas():
    """A NumPy transcription of one M-step and E-step (float64) as a third reference."""
    votes, activations, beta_u, beta_a = routing_inputs(2, activations_low=0.05)
    layer = peer.ConvCaps(B=2, C=OUT_CAPS, K=3, iters=2, inverse_temperature=1e-2)
    with torch.no_grad():
        layer.beta_u.copy_(torch.from_numpy(beta_u))
        layer.beta_a.copy_(torch.from_numpy(beta_a))
        v, a_in = torch.from_numpy(votes), torch.from_numpy(activations)[..., None]
        r = torch.full((BATCH, IN_CAPS, OUT_CAPS), 1.0 / OUT_CAPS)
        a_out, mu, sigma_sq = layer.m_step(a_in, r, v, layer.eps, BATCH, IN_CAPS, OUT_CAPS, 16)
        r = layer.e_step(mu, sigma_sq, a_out, v, layer.eps, BATCH, OUT_CAPS)
    for b in range(BATCH):
        want = numpy_m_and_e_step(votes[b].astype(np.float64), activations[b], beta_u, beta_a, 1e-2)
        np.testing.assert_allclose(mu[b, 0].numpy(), want[0], atol=1e-5)
        np.testing.assert_allclose(a_out[b].numpy(), want[1], atol=1e-6)
        np.testing.assert_allclose(r[b].numpy(), want[2], atol=1e-5)


def test_conv_capsule_layer_agrees_with_capsjax_given_the_same_weights():
    """Receptive fields (kernel row, kernel column, type), votes ``pose @ W`` and routing agree
    (unit input activations, capsjax's layer given the peer's fixed lambda; its eps, 1e-4 where the
    peer's is 1e-8, moves the poses by up to about 1e-4)."""
    in_types, out_types, size, iters = 2, 3, 7, 2
    rng = np.random.default_rng(3)
    poses = rng.normal(size=(2, size, size, in_types, 16)).astype(np.float32)
    torch.manual_seed(0)
    layer = peer.ConvCaps(B=in_types, C=out_types, K=3, stride=2, iters=iters, inverse_temperature=1e-2)
    with torch.no_grad():
        layer.beta_a.copy_(torch.linspace(-1, 1, out_types))
        layer.beta_u.copy_(torch.linspace(0.5, -0.5, out_types))
        x = np.concatenate([poses.reshape(2, size, size, -1), np.ones((2, size, size, in_types), np.float32)], -1)
        out = layer(torch.from_numpy(x)).numpy()
    ours = ConvCapsules(in_types, out_types, kernel_size=3, stride=2, num_iters=iters, rngs=nnx.Rngs(0))
    ours.W[...] = jnp.asarray(layer.weights.detach().numpy().reshape(3, 3, in_types, out_types, 4, 4))
    ours.beta_a[...] = jnp.asarray(layer.beta_a.detach().numpy())
    ours.beta_u[...] = jnp.asarray(layer.beta_u.detach().numpy())
    ours.temperatures = (1e-2,) * iters
    routed = ours(poses, np.ones(poses.shape[:4], np.float32))
    np.testing.assert_allclose(out[..., : out_types * 16], np.asarray(routed.poses).reshape(2, 3, 3, -1), atol=3e-4)
    np.testing.assert_allclose(out[..., out_types * 16 :], np.asarray(routed.activations), atol=3e-5)


def test_class_votes_without_coordinates_agree_with_capsjax():
    """Shared matrices over positions, inputs ordered (row, column, type); the peer's coordinate
    addition (row / h, column / w on elements 0, 1) is not capsjax's (centres on 3, 7)."""
    height, types, classes = 3, 2, 5
    poses = np.random.default_rng(4).normal(size=(1, height, height, types, 16)).astype(np.float32)
    layer = peer.ConvCaps(types, classes, K=1, stride=1, coor_add=True, w_shared=True)
    with torch.no_grad():
        p_in = torch.from_numpy(poses.reshape(1, -1, 16))
        votes = layer.transform_view(p_in, layer.weights, classes, 4, w_shared=True)
        with_coordinates = layer.add_coord(votes, 1, height, height, types, classes, 16)
    weights = layer.weights.detach().numpy()[0]
    ours = class_votes(poses[0], weights, np.zeros((height, height, 2), np.float32))
    np.testing.assert_allclose(votes[0].numpy(), np.asarray(ours), atol=1e-5)
    added = (with_coordinates - votes)[0].numpy().reshape(height, height, types, classes, 16)
    np.testing.assert_allclose(added[:, 2, 0, 0, 1], np.full(height, 2 / height), atol=1e-6)
    assert np.count_nonzero(added[..., 2:]) == 0


def test_spread_loss_agrees_with_capsjax():
    rng = np.random.default_rng(5)
    scores = rng.uniform(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    criterion = peer.SpreadLoss(num_class=5, m_min=0.2, m_max=0.9)
    theirs = criterion(torch.from_numpy(scores), torch.from_numpy(labels), r=0.5).item()
    ours = float(jnp.mean(spread_loss(scores, labels, margin=0.55)))
    assert theirs == pytest.approx(ours, rel=1e-5)


def test_parameter_counts_differ_by_the_peers_batch_norm():
    model = peer.CapsNet(A=peer.A, B=peer.B, C=peer.C, D=peer.D, E=peer.NUM_CLASSES, iters=peer.EM_ITERS)
    theirs = sum(p.numel() for p in model.parameters())
    config = MatrixCapsNetConfig.preset("small", num_iters=peer.EM_ITERS)
    ours = count_params(nnx.eval_shape(lambda: MatrixCapsNet(config, rngs=nnx.Rngs(0))))
    assert (theirs, ours) == (67_282, 67_154)
    assert theirs - ours == 2 * peer.A  # batch norm's scale and shift


@pytest.mark.parametrize("script", ["torch_matrix_capsnet.py", "capsjax_matrix_capsnet.py"])
def test_bench_script_prints_one_json_line(script):
    command = [sys.executable, str(SYSTEMS / script), "--mode", "train", "--batch", "2"]
    command += ["--steps", "1", "--warmup", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["examples_per_sec"] > 0 and line["mode"] == "train" and line["em_iters"] == 2
    assert line["parameters"] == (67_282 if script.startswith("torch") else 67_154)
