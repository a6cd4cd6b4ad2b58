"""The paper's CapsNet in PyTorch, written the way PyTorch users write it: a peer.

Our transcription of Sabour et al. (2017): conv 256@9x9 -> primary 32x8D (9x9 stride 2) -> 10x16D
by 3 routing iterations -> decoder 512-1024-784 masked by the true label; margin loss + 0.0005 x
summed squared reconstruction error; Adam; eager mode. Inference: capsule lengths under
``torch.inference_mode``. Run as a script (see ``protocol.py``); ``--bfloat16`` runs the step
under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Needs ``pip install 'capsjax[bench]'``.
"""

from __future__ import annotations

import contextlib

import torch
from protocol import parse_args, report, time_steps  # protocol.py sits beside this script
from torch import nn


def squash(s, dim=-1, eps=1e-7):
    n2 = (s * s).sum(dim, keepdim=True)
    return n2 / (1 + n2) * s / torch.sqrt(n2 + eps)


class TorchCapsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 256, 9)
        self.primary = nn.Conv2d(256, 256, 9, stride=2)
        self.W = nn.Parameter(0.01 * torch.randn(1152, 10, 16, 8))
        self.decoder = nn.Sequential(
            nn.Linear(160, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 784), nn.Sigmoid()
        )

    def capsules(self, x):
        h = torch.relu(self.conv(x))
        u = self.primary(h)  # [b, 256, 6, 6]
        b = u.shape[0]
        u = squash(u.permute(0, 2, 3, 1).reshape(b, 1152, 8))
        u_hat = torch.einsum("iodk,bik->biod", self.W, u)
        logits = torch.zeros(b, 1152, 10, dtype=u_hat.dtype, device=x.device)
        for r in range(3):
            c = torch.softmax(logits, dim=2)
            v = squash(torch.einsum("bio,biod->bod", c, u_hat))
            if r < 2:
                logits = logits + torch.einsum("biod,bod->bio", u_hat, v)
        return v

    def forward(self, x, labels):
        v = self.capsules(x)
        lengths = torch.sqrt((v * v).sum(-1) + 1e-9)
        mask = torch.nn.functional.one_hot(labels, 10).to(v.dtype)
        recon = self.decoder((v * mask[:, :, None]).reshape(v.shape[0], 160))
        return lengths, recon


def train_step(model, opt, x, labels):
    lengths, recon = model(x, labels)
    t = torch.nn.functional.one_hot(labels, 10).float()
    lengths, recon = lengths.float(), recon.float()
    margin = (t * torch.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * torch.relu(lengths - 0.1) ** 2).sum(1)
    loss = (margin + 0.0005 * ((recon - x.reshape(x.shape[0], -1)) ** 2).sum(1)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    model = TorchCapsNet()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(args.batch, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch,))
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.bfloat16 else contextlib.nullcontext()

    def step():
        with precision:
            if args.mode == "train":
                train_step(model, opt, x, labels)
            else:
                with torch.inference_mode():
                    v = model.capsules(x)
                    torch.sqrt((v * v).sum(-1) + 1e-9)

    times = time_steps(step, steps=args.steps, warmup=args.warmup)
    report(
        "pytorch",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        args,
        times,
        parameters=sum(p.numel() for p in model.parameters()),
    )


if __name__ == "__main__":
    main()
