"""capsjax's CapsNet timed by the same protocol as its peers (see ``protocol.py``).

Training: the jitted train step of ``make train`` (Adam, margin + reconstruction loss, random
+-2 px shifts on device), its buffers donated. Inference: the jitted classify step (no decoder).
``--bfloat16`` sets ``CapsNetConfig.compute_dtype="bfloat16"`` (parameters stay float32).
"""

from __future__ import annotations

from capsjax_timing import time_config  # beside this script, with protocol.py
from protocol import parse_args

from capsjax.nn import CapsNetConfig
from capsjax.training.config import TrainConfig


def main(argv=None):
    args = parse_args(argv)
    capsnet = CapsNetConfig(compute_dtype="bfloat16" if args.bfloat16 else "float32")
    config = TrainConfig(batch_size=args.batch, capsnet=capsnet)
    time_config(config, args)


if __name__ == "__main__":
    main()
