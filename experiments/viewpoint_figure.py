"""The viewpoints dataset at a glance: one toy of every category (rows of 3 elevations each) seen from
every 40 degrees of azimuth (columns), under the first lighting.

    python experiments/viewpoint_figure.py                  # writes experiments/figures/viewpoints/viewpoints_grid.png
    python experiments/viewpoint_figure.py --instance 7 --out grid7.png

Renders only the 135 images it shows (a few seconds); the dataset's cache is not touched.
"""

import argparse
import pathlib

import numpy as np
from matplotlib.figure import Figure

from capsjax.data.atomic import atomic_path
from capsjax.data.image_files import tile
from capsjax.data.shapes import CATEGORIES
from capsjax.data.viewpoints import INSTANCES, make_viewpoints

AZIMUTHS = tuple(range(0, 360, 40))
ELEVATIONS = (30, 50, 70)
OUT = pathlib.Path(__file__).parent / "figures" / "viewpoints" / "viewpoints_grid.png"


def viewpoints_grid(path: pathlib.Path, *, instance: int = 0) -> pathlib.Path:
    """Draw the grid: rows = (category, elevation), columns = azimuth."""
    split = next(name for name, ids in INSTANCES.items() if instance in ids)
    data = make_viewpoints(split, instances=[instance], azimuths=AZIMUTHS, elevations=ELEVATIONS, lightings=[0])
    # rendered in the order category, azimuth, elevation: put elevations in rows, azimuths in columns
    images = data.images.reshape(len(CATEGORIES), len(AZIMUTHS), len(ELEVATIONS), 48, 48).swapaxes(1, 2)
    grid = tile(images.reshape(-1, 48, 48), columns=len(AZIMUTHS), padding=2, fill=90)
    fig = Figure(figsize=(7.2, 11.6))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    step = 50
    ax.set_xticks(np.arange(len(AZIMUTHS)) * step + 26, [f"{a}°" for a in AZIMUTHS], fontsize=8)
    rows = [f"{name}  {e}°" for name in CATEGORIES for e in ELEVATIONS]
    ax.set_yticks(np.arange(len(rows)) * step + 26, rows, fontsize=8)
    ax.set_xlabel("azimuth")
    ax.set_title(f"viewpoints: instance {instance} of each category; rows: elevation", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=100, format="png")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instance", type=int, default=0, help="which instance of each category (0-9)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    print(viewpoints_grid(args.out, instance=args.instance))


if __name__ == "__main__":
    main()
