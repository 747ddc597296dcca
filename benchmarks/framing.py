"""Whether the book's 3D views show the whole house, checked in a real browser.

    .venv/bin/python benchmarks/framing.py [--eye 1.35,1.0,1.35] [--out /tmp/framing]

Draws, with `views3d.wireframes` as the book does, a plain 10 x 8 x 5 m box and the first
validation scenes of the `cpu` profile's data, one view each, saves each as a standalone
HTML page, takes a screenshot of it with headless Chromium (WebGL through SwiftShader) and
measures where the black GT lines land: a view is *framed* when none of them touches the
edge of its picture. Prints one line per view and exits 1 if any is cut. Chromium is not a
dependency of the project (`apt-get install chromium`); the test suite does not run this.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from s23dr.analysis import views3d
from s23dr.config import load_params
from s23dr.data import data_uri, open_dataset
from s23dr.inference import first

MARGIN = 3  # pixels: a GT line closer than this to the picture's edge counts as cut


def box_scene(size=(10.0, 5.0, 8.0)):
    """A scene whose GT wireframe is a box of `size` metres (x, y up, z) and no points."""
    corners = np.array([[x, y, z] for x in (0, size[0]) for y in (0, size[1]) for z in (0, size[2])], np.float32)
    edges = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])
    return {"xyz_norm": np.zeros((1, 3), np.float32), "class_id": np.zeros(1, np.uint8), "mask": np.zeros(1, bool),
            "center": corners.mean(0), "scale": 1.0, "gt_vertices": corners, "gt_edges": edges, "order_id": "box"}


def dark_extent(png):
    """(left, top, right, bottom) of the near-black pixels of a screenshot, or None."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    ys, xs = np.nonzero(pixels.max(-1) < 40)  # the GT lines are black; axis text is dark blue
    return None if len(xs) == 0 else (xs.min(), ys.min(), xs.max(), ys.max())


def screenshot(fig, path, chromium):
    """A screenshot of `fig` at the size the book draws it (the legend hidden: it holds a black line)."""
    fig.update_layout(showlegend=False)
    html = path.with_suffix(".html")
    fig.write_html(html, include_plotlyjs=True, full_html=True, config={"displayModeBar": False})
    subprocess.run([chromium, "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                    f"--window-size={fig.layout.width},{fig.layout.height}", "--virtual-time-budget=8000", "--hide-scrollbars",
                    f"--screenshot={path}", html.as_uri()], check=True, capture_output=True, timeout=120)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eye", default=",".join(str(views3d.VIEW_DIRECTION[k]) for k in "xyz"),
                        help="the direction the camera looks from, x,y,z (default: the book's views3d.VIEW_DIRECTION)")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--out", default=None, help="keep the screenshots here (default: a temporary folder)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("error: no chromium on PATH (apt-get install chromium)")
    views3d.VIEW_DIRECTION.update(zip("xyz", map(float, args.eye.split(","))))
    out = Path(args.out or tempfile.mkdtemp(prefix="framing_"))
    out.mkdir(parents=True, exist_ok=True)
    params = load_params("params/stage1.yaml", "cpu")
    scenes = [box_scene(), *first(open_dataset(data_uri(params, "val")), args.scenes)]
    cut = 0
    for scene in scenes:
        fig = views3d.wireframes([scene], cols=1)
        size = (fig.layout.width, fig.layout.height - views3d.LEGEND_PX)  # the view, above the legend's margin
        png = screenshot(fig, out / f"{scene['order_id']}.png", chromium)
        extent = dark_extent(png)
        framed = extent is not None and extent[0] >= MARGIN and extent[1] >= MARGIN and \
            extent[2] < size[0] - MARGIN and extent[3] < size[1] - MARGIN
        cut += not framed
        print(f"{scene['order_id']}: GT lines span x {extent[0]}..{extent[2]}, y {extent[1]}..{extent[3]} of "
              f"{size[0]}x{size[1]}: {'framed' if framed else 'CUT'} ({png})" if extent else
              f"{scene['order_id']}: nothing drawn ({png})")
    print(f"eye {args.eye}: {len(scenes) - cut} of {len(scenes)} views framed")
    return 1 if cut else 0


if __name__ == "__main__":
    sys.exit(main())
