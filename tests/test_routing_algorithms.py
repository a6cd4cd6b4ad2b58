"""Every routing algorithm behind get_routing: shared properties and float64 gradient checks (by
capsjax.testing.check_routing), and a NumPy transcription of each paper's procedure compared on random inputs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from capsjax import RoutedCapsules
from capsjax.ops.attention_routing import efficient_squash, inverted_dot_product_routing, self_attention_routing
from capsjax.ops.em_routing import em_routing, inverse_temperatures
from capsjax.ops.routing import ROUTING_FUNCTIONS, get_routing
from capsjax.testing import check_routing

ALGORITHMS = ["dynamic", "self_attention", "inverted_dot_product", "em"]


def votes(seed=0, shape=(12, 4, 6), scale=1.0, dtype=jnp.float32):
    return scale * jax.random.normal(jax.random.key(seed), shape, dtype)


def test_get_routing_lists_every_algorithm():
    assert sorted(ROUTING_FUNCTIONS) == sorted(ALGORITHMS)
    with pytest.raises(ValueError, match="choose one of .*'em'.*'inverted_dot_product'.*'self_attention'"):
        get_routing("capsule")


@pytest.mark.parametrize("name", sorted(ROUTING_FUNCTIONS))
def test_check_routing_passes(name):
    """Shapes, couplings (>= 0, summing to 1 over the outputs), vmap = loop, jit = no jit, finite value and
    gradient for zero and for identical votes, and check_grads in float64 (orders 1 and 2; EM's order 1).

    Reverse mode and EM's first order only, as before check_routing: with forward mode and EM's second
    order this test takes three times as long (the suite is at its CI limit), and passes; forward mode of
    dynamic routing is checked by test_routing.py::test_check_grads.
    """
    orders = (1,) if name == "em" else (1, 2)
    check_routing(get_routing(name), orders=orders, modes=("rev",)).raise_if_failed()


def test_em_with_the_papers_cost_passes_check_routing():
    """The paper's unstandardised cost (``normalize_cost=False``, CapsNet's ``em_cost="paper"``) through
    the same checks as the default: assignments, vmap, jit, degenerate votes, float64 gradients (order 1)."""
    import functools

    papers_cost = functools.partial(get_routing("em"), normalize_cost=False)
    check_routing(papers_cost, orders=(1,), modes=("rev",)).raise_if_failed()


def learned_inputs(name, in_caps=12, out_caps=4, dim=6, seed=3):
    """Random values of a routing's inputs besides the votes (EM's activations, the learned parameters)."""
    rng = np.random.default_rng(seed)
    if name == "em":
        return {
            "activations": rng.uniform(0.05, 0.95, in_caps),
            "beta_u": 0.3 * rng.standard_normal(out_caps),
            "beta_a": 0.3 * rng.standard_normal(out_caps),
        }
    if name == "inverted_dot_product":
        return {"norm_scale": 1 + 0.3 * rng.standard_normal(dim), "norm_offset": 0.3 * rng.standard_normal(dim)}
    return {"log_priors": 0.3 * rng.standard_normal((in_caps, out_caps))}


@pytest.mark.parametrize("name", ["self_attention", "inverted_dot_product", "em"])
def test_check_routing_passes_with_activations_and_learned_parameters(name):
    """The checks again away from the defaults of EM's activations and betas, the layer norm's scale and
    offset and the log priors; first order, both modes (EM's activations then vary: the (0, 1) check runs)."""
    from capsjax.testing import CHECKS

    # Efficient-CapsNet adds its priors to the softmax's couplings (eq. 6): with priors they need not sum to 1
    skip = {"couplings_nonnegative", "couplings_sum_to_one"} if name == "self_attention" else set()
    checks = [check for check in CHECKS if check not in skip] + ["gradients_order_1"]
    check_routing(get_routing(name), orders=(1,), checks=checks, **learned_inputs(name)).raise_if_failed()


@pytest.mark.parametrize("name", ["self_attention", "inverted_dot_product", "em"])
def test_gradients_in_the_learned_parameters_orders_1_and_2(name, x64):
    """float64 check_grads of every input, not only the votes: EM's activations, beta_u and beta_a; the
    layer norm's scale and offset; self-attention's log priors. Small sizes keep the second order cheap."""
    from jax.test_util import check_grads

    rng = np.random.default_rng(1)
    V = 0.5 * rng.standard_normal((5, 3, 4))
    inputs = learned_inputs(name, in_caps=5, out_caps=3, dim=4)
    routing = get_routing(name)
    weights = [rng.standard_normal(shape) for shape in ((3, 4), (5, 3), (3,))]

    def scalar(votes, *values):
        out = routing(votes, num_iters=2, **dict(zip(inputs, values, strict=True)))
        total = jnp.sum(out.v * weights[0]) + jnp.sum(out.c * weights[1])
        return total if out.activations is None else total + jnp.sum(out.activations * weights[2])

    check_grads(scalar, (V, *inputs.values()), order=2, modes=("fwd", "rev"), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_routed_capsules_accepts_each_algorithm(name):
    layer = RoutedCapsules(12, 8, 4, 6, routing=name, chunk_size=2, rngs=nnx.Rngs(0))
    out = layer(0.3 * jax.random.normal(jax.random.key(1), (3, 12, 8)))
    assert out.v.shape == (3, 4, 6) and bool(jnp.all(jnp.isfinite(out.v)))


# --- NumPy transcriptions of the papers' procedures ---


def np_self_attention(u, priors):
    n_in, n_out, d = u.shape
    a = np.zeros((n_in, n_out))
    for j in range(n_out):
        for i in range(n_in):
            a[i, j] = sum(u[i, j] @ u[k, j] for k in range(n_in)) / math.sqrt(d)
    c = np.exp(a - a.max(1, keepdims=True))
    c = c / c.sum(1, keepdims=True) + priors
    s = np.einsum("io,iod->od", c, u)
    norm = np.linalg.norm(s, axis=-1, keepdims=True)
    return (1 - np.exp(-norm)) * s / norm


def test_self_attention_matches_a_numpy_transcription():
    u = np.asarray(votes(3), np.float64)
    priors = 0.1 * np.random.default_rng(0).normal(size=(12, 4))
    got = self_attention_routing(jnp.asarray(u), log_priors=jnp.asarray(priors)).v
    np.testing.assert_allclose(got, np_self_attention(u, priors), rtol=1e-4, atol=1e-5)
    assert float(jnp.linalg.norm(efficient_squash(jnp.array([3.0, 4.0])))) == pytest.approx(1 - math.exp(-5), 1e-6)


def np_inverted_dot_product(u, iters, eps=1e-5):
    n_in, n_out, d = u.shape
    p = np.zeros((n_out, d))
    for _ in range(iters):
        a = np.array([[u[i, j] @ p[j] for j in range(n_out)] for i in range(n_in)])
        r = np.exp(a - a.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        for j in range(n_out):
            s = sum(r[i, j] * u[i, j] for i in range(n_in))
            p[j] = (s - s.mean()) / np.sqrt(s.var() + eps)
    return p


@pytest.mark.parametrize("iters", [1, 2, 3])
def test_inverted_dot_product_matches_a_numpy_transcription(iters):
    u = np.asarray(votes(4), np.float64)
    got = inverted_dot_product_routing(jnp.asarray(u), num_iters=iters).v
    np.testing.assert_allclose(got, np_inverted_dot_product(u, iters), rtol=1e-4, atol=1e-4)


def np_em(V, a_in, beta_u, beta_a, lambdas, eps=1e-4, normalize_cost=False):
    n_in, n_out, d = V.shape
    R = np.full((n_in, n_out), 1.0 / n_out)
    for t, lam in enumerate(lambdas):
        Rp = R * a_in[:, None]
        mass = Rp.sum(0) + eps
        mu = np.stack([(Rp[:, j, None] * V[:, j]).sum(0) / mass[j] for j in range(n_out)])
        var = np.stack([(Rp[:, j, None] * (V[:, j] - mu[j]) ** 2).sum(0) / mass[j] for j in range(n_out)]) + eps
        cost = (beta_u[:, None] + np.log(np.sqrt(var))).sum(1) * mass
        if normalize_cost:  # standard scores over the output capsules
            cost = (cost - cost.mean()) / np.sqrt(cost.var() + eps)
        a_out = 1 / (1 + np.exp(-lam * (beta_a - cost)))
        if t == len(lambdas) - 1:
            break
        p = np.exp(-(((V - mu) ** 2) / (2 * var)).sum(-1)) / np.sqrt(np.prod(2 * np.pi * var, axis=-1))
        R = a_out * p / (a_out * p).sum(1, keepdims=True)
    return mu, a_out, R


@pytest.mark.parametrize("normalize_cost", [False, True])
def test_em_routing_matches_a_numpy_transcription(x64, normalize_cost):
    rng = np.random.default_rng(1)
    V = rng.normal(size=(10, 3, 16)) * 0.5
    a_in, beta_u, beta_a = rng.uniform(0.1, 1, 10), rng.normal(size=3), rng.normal(size=3)
    lambdas = (0.5, 1.0, 2.0)
    mu, a_out, R = np_em(V, a_in, beta_u, beta_a, lambdas, normalize_cost=normalize_cost)
    got = em_routing(
        jnp.asarray(V),
        jnp.asarray(a_in),
        beta_u=beta_u,
        beta_a=beta_a,
        num_iters=3,
        temperatures=lambdas,
        normalize_cost=normalize_cost,
    )
    np.testing.assert_allclose(got.poses, mu, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.activations, a_out, rtol=1e-8)
    np.testing.assert_allclose(got.assignments, R, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("normalize_cost", [False, True])
def test_em_activations_within_zero_and_one_and_degenerate_inputs_are_finite(normalize_cost):
    V = votes(5, shape=(32, 5, 16))
    zeros5 = jnp.zeros(5)
    route = functools.partial(em_routing, normalize_cost=normalize_cost)
    result = route(V, jax.random.uniform(jax.random.key(2), (32,)), beta_u=zeros5, beta_a=zeros5)
    assert bool(jnp.all((result.activations > 0) & (result.activations < 1)))
    np.testing.assert_allclose(result.assignments.sum(-1), 1.0, rtol=1e-5)
    assert inverse_temperatures(3) == pytest.approx((0.01 / 3, 0.02 / 3, 0.01))

    def loss(V, a):
        out = route(V, a, beta_u=zeros5 + 0.1, beta_a=zeros5 - 0.1)
        return jnp.sum(out.poses**2) + jnp.sum(out.activations)

    for V_case, a_case in [(V, jnp.zeros(32)), (jnp.broadcast_to(V[:1], V.shape), jnp.ones(32))]:
        value, grads = jax.value_and_grad(loss, argnums=(0, 1))(V_case, a_case)
        assert bool(jnp.isfinite(value)) and all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    with pytest.raises(ValueError, match="temperatures: expected 3 values, got 2"):
        route(V, jnp.ones(32), beta_u=zeros5, beta_a=zeros5, temperatures=(1.0, 2.0))


@pytest.mark.parametrize("normalize_cost, temperature", [(False, 1.0), (True, 10.0)])
def test_em_logits_stay_finite_where_an_assignment_underflows(normalize_cost, temperature):
    # Two separated clusters and a sharp temperature: by the 4th iteration one output's activation is
    # so small (log a_j very negative) that some R are 0 in float32, with either cost.
    V = votes(0, shape=(16, 2, 16), scale=0.01).at[8:, 0].add(3.0).at[:8, 1].add(-3.0)
    sharp = {"num_iters": 4, "temperatures": (temperature,) * 4, "normalize_cost": normalize_cost}
    route = functools.partial(get_routing("em"), **sharp)

    def total_logit(V):
        return jnp.sum(route(V).logits)

    result = route(V)
    assert float(result.c.min()) == 0.0  # the case this test is about
    np.testing.assert_allclose(jnp.exp(result.logits), result.c, atol=1e-7)
    assert bool(jnp.all(jnp.isfinite(result.logits)))
    assert bool(jnp.all(jnp.isfinite(jax.grad(total_logit)(V))))


@pytest.mark.parametrize(
    "name, scores", [("self_attention", "length"), ("inverted_dot_product", "linear"), ("em", "activation")]
)
def test_capsnet_trains_with_each_routing_by_config(name, scores, tmp_path):
    """The layer on top of the conv backbone: `--config.capsnet.routing.name=<name>` trains end to end,
    with the class scores the routing comparison gives it."""
    import dataclasses

    from capsjax.training.config import apply_overrides
    from capsjax.training.loop import train_and_evaluate
    from helpers import tiny_config, write_fake_mnist

    data = write_fake_mnist(tmp_path / "mnist", train=64, test=32)
    overrides = [f"--config.capsnet.routing.name={name}", f"--config.capsnet.scores={scores}"]
    config = apply_overrides(tiny_config(epochs=1), overrides)
    assert config.capsnet.routing.name == name and config.capsnet.scores == scores
    summary = train_and_evaluate(
        dataclasses.replace(config, eval_batch_size=32), tmp_path / "run", data_dir=data, progress=False
    )
    assert summary["status"] == "completed" and summary["skipped_steps"] == 0


# --- inverted dot-product routing through a stack of layers, concurrent updates ---


def np_layer_norm(x, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


def np_concurrent_stack(p0, weights, iters):
    """Tsai et al.'s concurrent routing, written out: iteration 1 a uniform forward pass; then every
    layer from the previous iteration's poses of itself and of the layer below."""

    def step(p_in, W, p_out):
        votes = np.einsum("iodk,ik->iod", W, p_in)
        n_in, n_out, _ = votes.shape
        r = np.full((n_in, n_out), 1.0 / n_out)
        if p_out is not None:
            a = np.einsum("iod,od->io", votes, p_out)
            r = np.exp(a - a.max(1, keepdims=True))
            r /= r.sum(1, keepdims=True)
        return np_layer_norm(np.einsum("io,iod->od", r, votes))

    poses = [p0]
    for W in weights:
        poses.append(step(poses[-1], W, None))
    for _ in range(iters - 1):
        poses = [p0] + [step(poses[l], W, poses[l + 1]) for l, W in enumerate(weights)]
    return poses[1:]


def stack_inputs(seed=0):
    keys = jax.random.split(jax.random.key(seed), 3)
    p0 = jax.random.normal(keys[0], (12, 4), jnp.float64)
    weights = [
        0.3 * jax.random.normal(keys[1], (12, 6, 5, 4), jnp.float64),
        0.3 * jax.random.normal(keys[2], (6, 3, 8, 5), jnp.float64),
    ]
    return p0, weights


@pytest.mark.parametrize("iters", [1, 2, 3])
def test_concurrent_stack_matches_a_numpy_transcription(iters, x64):
    from capsjax.ops.attention_routing import inverted_dot_product_routing_layers

    p0, weights = stack_inputs()
    got = inverted_dot_product_routing_layers(p0, weights, num_iters=iters)
    expected = np_concurrent_stack(np.asarray(p0), [np.asarray(w) for w in weights], iters)
    for layer, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(layer.v, want, rtol=1e-9, atol=1e-12)


def test_sequential_stack_is_layer_by_layer_routing_and_differs_from_concurrent(x64):
    from capsjax import capsule_votes
    from capsjax.ops.attention_routing import inverted_dot_product_routing_layers

    p0, weights = stack_inputs(1)
    sequential = inverted_dot_product_routing_layers(p0, weights, num_iters=3, concurrent=False)
    first = inverted_dot_product_routing(capsule_votes(p0, weights[0]), num_iters=3)
    second = inverted_dot_product_routing(capsule_votes(first.v, weights[1]), num_iters=3)
    np.testing.assert_allclose(sequential[0].v, first.v, rtol=1e-12)
    np.testing.assert_allclose(sequential[1].v, second.v, rtol=1e-12)
    concurrent = inverted_dot_product_routing_layers(p0, weights, num_iters=3)
    np.testing.assert_allclose(concurrent[0].v, first.v, rtol=1e-12)  # the bottom layer's input is fixed
    assert np.abs(concurrent[1].v - second.v).max() > 1e-3  # the top saw the layer below one iteration late
    one = inverted_dot_product_routing_layers(p0, weights[:1], num_iters=3)  # one layer: the plain routing
    np.testing.assert_allclose(one[0].v, first.v, rtol=1e-12)


def test_concurrent_stack_gradients_and_its_layer(x64):
    from jax.test_util import check_grads

    from capsjax.nn import InvertedAttentionCapsules
    from capsjax.ops.attention_routing import inverted_dot_product_routing_layers

    p0, weights = stack_inputs(2)
    scales = [1 + 0.2 * jnp.arange(5.0), 1 - 0.1 * jnp.arange(8.0)]

    def top(p0, w0, w1, s0, s1):
        results = inverted_dot_product_routing_layers(p0, [w0, w1], num_iters=2, norm_scales=[s0, s1])
        return jnp.sum(results[-1].v * jnp.arange(8.0)[None]) + jnp.sum(results[0].c * jnp.arange(6.0)[None])

    check_grads(jax.jit(top), (p0, *weights, *scales), order=1, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)
    stack = InvertedAttentionCapsules([(12, 4), (6, 5), (3, 8)], num_iters=2, rngs=nnx.Rngs(0))
    for k, (scale, offset) in enumerate(zip(stack.norm_scales, stack.norm_offsets, strict=True)):
        scale[...] += 0.2 * jax.random.normal(
            jax.random.key(10 + k), scale.shape, jnp.float32
        )  # away from 1 and 0: passed?
        offset[...] += 0.2 * jax.random.normal(jax.random.key(20 + k), offset.shape, jnp.float32)
    u = jax.random.normal(jax.random.key(4), (3, 12, 4))
    out = nnx.jit(lambda stack, u: stack(u))(stack, u)
    ws = [w[...] for w in stack.weights]
    norms = dict(norm_scales=[p[...] for p in stack.norm_scales], norm_offsets=[p[...] for p in stack.norm_offsets])
    one = jax.jit(lambda u_one: inverted_dot_product_routing_layers(u_one, ws, num_iters=2, **norms))
    for k in range(3):  # the layer is the pure function of each example
        for layer, want in zip(out, one(u[k]), strict=True):
            np.testing.assert_allclose(layer.v[k], want.v, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="u: expected shape \\[batch, 12, 4\\]"):
        stack(jnp.ones((3, 12, 5)))
    with pytest.raises(ValueError, match="sizes: expected at least 2"):
        InvertedAttentionCapsules([(12, 4)], rngs=nnx.Rngs(0))


def test_concurrent_stack_second_order_jit_and_degenerate_inputs(x64):
    """The stack's own properties (the single-layer routing gets them from check_routing): check_grads of
    order 2, jit = no jit, and finite value and gradient for zero and for identical input poses."""
    from jax.test_util import check_grads

    from capsjax.ops.attention_routing import inverted_dot_product_routing_layers

    p0, weights = stack_inputs(3)
    p0, weights = p0[:5], [weights[0][:5, :3], weights[1][:3]]  # small: the second order is cheap

    def top(p0, w0, w1):
        results = inverted_dot_product_routing_layers(p0, [w0, w1], num_iters=2)
        return jnp.sum(results[-1].v * jnp.arange(8.0)[None]) + jnp.sum(results[0].c * jnp.arange(3.0)[None])

    check_grads(top, (p0, *weights), order=2, modes=("rev",), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(jax.jit(top)(p0, *weights), top(p0, *weights), rtol=1e-12)
    for case in (jnp.zeros_like(p0), jnp.broadcast_to(p0[:1], p0.shape)):
        value, grads = jax.value_and_grad(top, argnums=(0, 1, 2))(case, *weights)
        assert bool(jnp.isfinite(value)) and all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_the_concurrent_stack_sits_on_a_convolutional_backbone():
    """Conv2D -> PrimaryCapsules -> InvertedAttentionCapsules, as Tsai et al. stack it: gradients reach
    the backbone's kernels through every routed layer, and a few Adam steps fit a small batch."""
    import optax

    from capsjax.nn import Conv2D, InvertedAttentionCapsules, PrimaryCapsules

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = Conv2D(1, 16, 5, stride=2, rngs=rngs)  # 13x13 -> 5x5
            self.primary = PrimaryCapsules(16, num_types=4, caps_dim=4, kernel_size=3, stride=1, rngs=rngs)
            self.routed = InvertedAttentionCapsules([(36, 4), (8, 6), (3, 8)], num_iters=2, rngs=rngs)

        def __call__(self, images):
            return self.routed(self.primary(jax.nn.relu(self.conv(images))))[-1].v  # [batch, 3, 8]

    images = jax.random.uniform(jax.random.key(0), (6, 13, 13, 1))
    targets = jax.random.normal(jax.random.key(1), (6, 3, 8))
    net = Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(net, optax.adam(1e-2), wrt=nnx.Param)

    def loss(net):
        return jnp.mean(jnp.square(net(images) - targets))

    @nnx.jit
    def step(net, optimizer):
        value, grads = nnx.value_and_grad(loss)(net)
        optimizer.update(net, grads)
        return value, grads

    first, grads = step(net, optimizer)
    kernel_grad = grads.conv.kernel[...]
    assert bool(jnp.all(jnp.isfinite(kernel_grad))) and float(jnp.abs(kernel_grad).max()) > 0
    for _ in range(30):
        value, _ = step(net, optimizer)
    assert float(value) < 0.9 * float(first)


def test_em_standardised_costs_separate_classes_at_capsnets_size():
    """At CapsNet's size (288 primary capsules with small lengths, 10 classes, votes of ~0.01 at
    initialisation) the paper's unstandardised cost leaves every class activation near 0.5, as the
    comparison's EM runs stayed at chance; standardised (the "em" default) the activations spread over
    (0, 1), and in the first iteration (uniform assignments, equal masses) they do not depend on the
    votes' overall scale."""
    V = votes(6, shape=(288, 10, 16), scale=0.01)
    a_in = jax.random.uniform(jax.random.key(7), (288,), minval=0.05, maxval=0.3)
    route = get_routing("em")
    spread = lambda out: float(out.activations.max() - out.activations.min())
    assert spread(route(V, activations=a_in)) > 0.5
    assert spread(route(V, activations=a_in, normalize_cost=False)) < 0.02
    zeros = jnp.zeros(10)  # em_routing itself picks the standardised schedule (1/3, 2/3, 1), not 0.01's
    assert spread(em_routing(V, a_in, beta_u=zeros, beta_a=zeros, normalize_cost=True)) > 0.5
    with pytest.raises(ValueError, match="normalize_cost: .* >= 2 output capsules, got 1"):
        route(V[:, :1], activations=a_in)
    zeros, V = jnp.zeros(10), votes(6, shape=(288, 10, 16))  # unit votes: their variances far above eps
    first = [
        em_routing(scale * V, a_in, beta_u=zeros, beta_a=zeros, num_iters=1, temperatures=(1.0,), normalize_cost=True)
        for scale in (1.0, 30.0)
    ]
    np.testing.assert_allclose(first[0].activations, first[1].activations, rtol=1e-3, atol=1e-4)
    unscaled = [
        em_routing(scale * V, a_in, beta_u=zeros, beta_a=zeros, num_iters=1, temperatures=(1.0,))
        for scale in (1.0, 30.0)
    ]
    assert float(jnp.max(jnp.abs(unscaled[0].activations - unscaled[1].activations))) > 0.1
