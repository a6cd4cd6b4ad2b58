"""Matrix capsules with EM routing in PyTorch, written the way PyTorch users write it: a peer.

Our transcription of the most starred public PyTorch implementation of Hinton, Sabour, Frosst (2018),
github.com/yl-1993/Matrix-Capsules-EM-PyTorch (``model/capsules.py``, ``loss/spread_loss.py``,
``train.py``; commit ca4cd7f), with the network of its ``train.py`` (A=64, B=8, C=D=16, 5 classes)
and the iterations of its README's smallNORB command (``--em-iters`` default 2, ``--batch-size 32``
on 32x32 crops):

- conv 5x5 stride 2 **padding 2** -> batch norm -> ReLU (32x32 -> 16x16);
- primary capsules: a 1x1 conv for the B poses and one, through a sigmoid, for the B activations;
- ConvCaps1 3x3 stride 2 (-> 7x7), ConvCaps2 3x3 stride 1 (-> 5x5): receptive fields gathered by
  indexing, votes by ``repeat`` + ``matmul`` of the 4x4 matrices, EM routing at every position;
- class capsules: transformation matrices shared over positions, coordinate addition of
  ``row / h`` and ``column / w`` to vote elements 0 and 1; the class activations are the output.

Its EM routing: a fixed inverse temperature 1e-3 in every iteration; ``beta_u``, ``beta_a`` per
output type; in the M-step the assignments times the input activations are renormalised over the
outputs (``r * a / sum_j(r * a)``), which cancels the input activations; cost
``sum_h (beta_u + log sigma_h) * sum_i r_ij``. Spread loss with the margin rising from 0.2 to 0.9
over training, Adam (3e-3, weight decay 2e-7). The public code runs on CUDA only
(``torch.cuda.FloatTensor``); here every tensor is made on the input's device.

Run as a script (see ``protocol.py``); ``--bfloat16`` runs the step under
``torch.autocast("cpu", dtype=torch.bfloat16)``. Needs ``pip install 'capsjax[bench]'``.
"""

from __future__ import annotations

import contextlib
import math

import torch
from protocol import parse_args, report, time_steps  # protocol.py sits beside this script
from torch import nn

A, B, C, D, NUM_CLASSES = 64, 8, 16, 16, 5
EM_ITERS = 2  # the README's smallNORB command leaves --em-iters at its default, 2
IMAGE_SIZE = 32
LEARNING_RATE, WEIGHT_DECAY = 3e-3, 2e-7


class PrimaryCaps(nn.Module):
    """Features ``(b, A, h, w)`` -> ``(b, h, w, B*16 + B)``: the B poses, then the B activations."""

    def __init__(self, A=32, B=32, K=1, P=4, stride=1):
        super().__init__()
        self.pose = nn.Conv2d(A, B * P * P, kernel_size=K, stride=stride, bias=True)
        self.a = nn.Conv2d(A, B, kernel_size=K, stride=stride, bias=True)

    def forward(self, x):
        out = torch.cat([self.pose(x), torch.sigmoid(self.a(x))], dim=1)
        return out.permute(0, 2, 3, 1)


class ConvCaps(nn.Module):
    """Capsules ``(b, h, w, B*17)`` -> ``(b, h', w', C*17)`` by EM routing over each receptive field;
    with ``w_shared`` (class capsules, K=1) every position's capsules route to C outputs: ``(b, C)``."""

    def __init__(
        self, B=32, C=32, K=3, P=4, stride=2, iters=3, coor_add=False, w_shared=False, inverse_temperature=1e-3
    ):
        super().__init__()
        self.B, self.C, self.K, self.P, self.psize = B, C, K, P, P * P
        self.stride, self.iters = stride, iters
        self.coor_add, self.w_shared = coor_add, w_shared
        self.eps = 1e-8
        self._lambda = inverse_temperature
        self.beta_u = nn.Parameter(torch.zeros(C))
        self.beta_a = nn.Parameter(torch.zeros(C))
        self.weights = nn.Parameter(torch.randn(1, K * K * B, C, P, P))

    def m_step(self, a_in, r, v, eps, b, B, C, psize):
        """a_in ``(b, B, 1)``, r ``(b, B, C)``, v ``(b, B, C, 16)`` -> a_out ``(b, C)``, mu and
        sigma_sq ``(b, 1, C, 16)``."""
        r = r * a_in
        r = r / (r.sum(dim=2, keepdim=True) + eps)
        r_sum = r.sum(dim=1, keepdim=True)
        coeff = (r / (r_sum + eps)).view(b, B, C, 1)
        mu = torch.sum(coeff * v, dim=1, keepdim=True)
        sigma_sq = torch.sum(coeff * (v - mu) ** 2, dim=1, keepdim=True) + eps
        r_sum = r_sum.view(b, C, 1)
        sigma_sq = sigma_sq.view(b, C, psize)
        cost_h = (self.beta_u.view(C, 1) + torch.log(sigma_sq.sqrt())) * r_sum
        a_out = torch.sigmoid(self._lambda * (self.beta_a - cost_h.sum(dim=2)))
        return a_out, mu, sigma_sq.view(b, 1, C, psize)

    def e_step(self, mu, sigma_sq, a_out, v, eps, b, C):
        """-> r ``(b, B, C)``: softmax over the outputs of ``ln a_j + ln p_ij``."""
        ln_p_j_h = -((v - mu) ** 2) / (2 * sigma_sq) - torch.log(sigma_sq.sqrt()) - 0.5 * math.log(2 * math.pi)
        ln_ap = ln_p_j_h.sum(dim=3) + torch.log(a_out.view(b, 1, C))
        return torch.softmax(ln_ap, dim=2)

    def caps_em_routing(self, v, a_in, C, eps):
        """v ``(b, B, C, 16)``, a_in ``(b, B, 1)`` -> mu ``(b, 1, C, 16)``, a_out ``(b, C)``."""
        b, B, c, psize = v.shape
        r = v.new_full((b, B, C), 1.0 / C)
        for iter_ in range(self.iters):
            a_out, mu, sigma_sq = self.m_step(a_in, r, v, eps, b, B, C, psize)
            if iter_ < self.iters - 1:
                r = self.e_step(mu, sigma_sq, a_out, v, eps, b, C)
        return mu, a_out

    def add_patches(self, x, K, stride):
        """``(b, H, W, c)`` -> ``(b, H', W', K, K, c)`` by indexing the rows, then the columns."""
        b, h, w, c = x.shape
        oh = ow = (h - K) // stride + 1
        idxs = [[h_idx + k_idx for k_idx in range(K)] for h_idx in range(0, h - K + 1, stride)]
        x = x[:, idxs, :, :]
        x = x[:, :, :, idxs, :]
        return x.permute(0, 1, 3, 2, 4, 5).contiguous(), oh, ow

    def transform_view(self, x, w, C, P, w_shared=False):
        """Poses ``(b, n, 16)`` -> votes ``(b, n, C, 16)``, each pose times its 4x4 matrices."""
        b, n, psize = x.shape
        x = x.view(b, n, 1, P, P)
        if w_shared:
            w = w.repeat(1, n // w.size(1), 1, 1, 1)
        w = w.repeat(b, 1, 1, 1, 1)
        x = x.repeat(1, 1, C, 1, 1)
        return torch.matmul(x, w).view(b, n, C, P * P)

    def add_coord(self, v, b, h, w, B, C, psize):
        """Adds ``row / h`` to vote element 0 and ``column / w`` to element 1."""
        v = v.view(b, h, w, B, C, psize)
        coor = torch.arange(h, dtype=v.dtype, device=v.device) / h
        coor_h = v.new_zeros(1, h, 1, 1, 1, psize)
        coor_w = v.new_zeros(1, 1, w, 1, 1, psize)
        coor_h[0, :, 0, 0, 0, 0] = coor
        coor_w[0, 0, :, 0, 0, 1] = coor
        return (v + coor_h + coor_w).view(b, h * w * B, C, psize)

    def forward(self, x):
        b, h, w, c = x.shape
        if not self.w_shared:
            x, oh, ow = self.add_patches(x, self.K, self.stride)
            p_in = x[..., : self.B * self.psize].contiguous().view(b * oh * ow, self.K * self.K * self.B, self.psize)
            a_in = x[..., self.B * self.psize :].contiguous().view(b * oh * ow, self.K * self.K * self.B, 1)
            v = self.transform_view(p_in, self.weights, self.C, self.P)
            p_out, a_out = self.caps_em_routing(v, a_in, self.C, self.eps)
            return torch.cat([p_out.view(b, oh, ow, self.C * self.psize), a_out.view(b, oh, ow, self.C)], dim=3)
        p_in = x[..., : self.B * self.psize].contiguous().view(b, h * w * self.B, self.psize)
        a_in = x[..., self.B * self.psize :].contiguous().view(b, h * w * self.B, 1)
        v = self.transform_view(p_in, self.weights, self.C, self.P, self.w_shared)
        if self.coor_add:
            v = self.add_coord(v, b, h, w, self.B, self.C, self.psize)
        _, a_out = self.caps_em_routing(v, a_in, self.C, self.eps)
        return a_out


class CapsNet(nn.Module):
    """ReLU conv (with batch norm) -> primary caps -> ConvCaps1 -> ConvCaps2 -> class caps: ``(b, 1, 32, 32)``
    images -> class activations ``(b, E)``."""

    def __init__(self, A=32, B=32, C=32, D=32, E=10, K=3, P=4, iters=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, A, kernel_size=5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(A, eps=0.001, momentum=0.1, affine=True)
        self.relu1 = nn.ReLU(inplace=False)
        self.primary_caps = PrimaryCaps(A, B, 1, P, stride=1)
        self.conv_caps1 = ConvCaps(B, C, K, P, stride=2, iters=iters)
        self.conv_caps2 = ConvCaps(C, D, K, P, stride=1, iters=iters)
        self.class_caps = ConvCaps(D, E, 1, P, stride=1, iters=iters, coor_add=True, w_shared=True)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.class_caps(self.conv_caps2(self.conv_caps1(self.primary_caps(x))))


class SpreadLoss(nn.Module):
    """``sum_{i != t} max(0, m - (a_t - a_i))^2``, averaged over the batch; m rises from ``m_min`` to
    ``m_max`` as ``r`` (the fraction of training done) goes from 0 to 1."""

    def __init__(self, m_min=0.2, m_max=0.9, num_class=10):
        super().__init__()
        self.m_min, self.m_max, self.num_class = m_min, m_max, num_class

    def forward(self, x, target, r):
        b, E = x.shape
        margin = self.m_min + (self.m_max - self.m_min) * r
        at = x.gather(1, target.view(b, 1)).repeat(1, E)  # the public code fills this row by row
        loss = torch.clamp(margin - (at - x), min=0) ** 2
        return loss.sum() / b - margin**2  # the target's own term is margin**2


def lr_at(global_step, init_lr=LEARNING_RATE, decay_steps=20000, decay_rate=0.96):
    """The public code's exponential decay, set on the optimizer before every step."""
    return init_lr * decay_rate ** (global_step / decay_steps)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    model = CapsNet(A=A, B=B, C=C, D=D, E=NUM_CLASSES, iters=EM_ITERS)
    criterion = SpreadLoss(num_class=NUM_CLASSES, m_min=0.2, m_max=0.9)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    x = torch.rand(args.batch, 1, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,))
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.bfloat16 else contextlib.nullcontext()
    model.train(args.mode == "train")
    done = [0]

    def step():
        with precision:
            if args.mode == "train":
                opt.zero_grad()
                loss = criterion(model(x).float(), labels, r=0.0)
                for group in opt.param_groups:
                    group["lr"] = lr_at(done[0] + 1)
                loss.backward()
                opt.step()
                done[0] += 1
            else:
                with torch.inference_mode():
                    model(x)

    times = time_steps(step, steps=args.steps, warmup=args.warmup)
    report(
        "pytorch",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        args,
        times,
        parameters=sum(p.numel() for p in model.parameters()),
        em_iters=EM_ITERS,
    )


if __name__ == "__main__":
    main()
