"""A PyTorch CapsNet train step of the paper's network, for a side-by-side speed comparison.

Not part of capsjax (PyTorch is not a dependency). Written here from the paper, not copied:
conv 256@9x9 -> primary 32x8D (9x9 stride 2) -> 10x16D by 3 routing iterations -> decoder
512-1024-784; margin + 0.0005 x reconstruction loss; Adam. Run it in a venv with torch:

    pip install torch numpy
    python experiments/bench_pytorch.py --batch 128 --steps 5      # prints JSON: examples/s

`capsjax bench` numbers and this one should be measured back to back on the same quiet machine.
"""

import argparse
import json
import statistics
import time

import torch
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

    def forward(self, x, labels):
        h = torch.relu(self.conv(x))
        u = self.primary(h)  # [b, 256, 6, 6]
        b = u.shape[0]
        u = squash(u.permute(0, 2, 3, 1).reshape(b, 1152, 8))
        u_hat = torch.einsum("iodk,bik->biod", self.W, u)
        logits = torch.zeros(b, 1152, 10, device=x.device)
        for r in range(3):
            c = torch.softmax(logits, dim=2)
            v = squash(torch.einsum("bio,biod->bod", c, u_hat))
            if r < 2:
                logits = logits + torch.einsum("biod,bod->bio", u_hat, v)
        lengths = torch.sqrt((v * v).sum(-1) + 1e-9)
        mask = torch.nn.functional.one_hot(labels, 10).float()
        recon = self.decoder((v * mask[:, :, None]).reshape(b, 160))
        return lengths, recon


def train_step(model, opt, x, labels):
    lengths, recon = model(x, labels)
    t = torch.nn.functional.one_hot(labels, 10).float()
    margin = (t * torch.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * torch.relu(lengths - 0.1) ** 2).sum(1)
    loss = (margin + 0.0005 * ((recon - x.reshape(x.shape[0], -1)) ** 2).sum(1)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TorchCapsNet()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(args.batch, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch,))
    train_step(model, opt, x, labels)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train_step(model, opt, x, labels)
        times.append(time.perf_counter() - start)
    step = statistics.median(times)
    print(
        json.dumps(
            {
                "framework": f"torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "step_sec": step,
                "train_examples_per_sec": args.batch / step,
            }
        )
    )


if __name__ == "__main__":
    main()
