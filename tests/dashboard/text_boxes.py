"""Text boxes of an SVG as Chromium lays it out: for the figure-layout tests.

Each <text> element's box is taken from the browser itself (getBBox in the element's own coordinates, mapped by
its transform to the root SVG's coordinates), so rotated tick labels are rotated rectangles, not the loose
axis-aligned boxes around them. Two boxes collide when their rectangles intersect (separating-axis test) by more
than TOLERANCE points; a box leaves the figure when a corner lies outside the root SVG's viewBox.
"""
from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOLERANCE = 0.3  # in points: glyph boxes include the font's line gap, so boxes that merely touch are fine

_JS = r"""
const svg = document.querySelector('svg');
const vb = svg.viewBox && svg.viewBox.baseVal && svg.viewBox.baseVal.width ? svg.viewBox.baseVal
         : {x: 0, y: 0, width: svg.width.baseVal.value, height: svg.height.baseVal.value};
const rootInv = svg.getScreenCTM().inverse();
const out = [];
for (const el of svg.querySelectorAll('text')) {
  const txt = (el.textContent || '').trim();
  if (!txt) continue;
  const style = getComputedStyle(el);
  if (style.display === 'none' || style.visibility === 'hidden' || parseFloat(style.opacity) === 0) continue;
  let hidden = false;
  for (let p = el.parentElement; p && p !== svg; p = p.parentElement) {
    const s = getComputedStyle(p);
    if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) { hidden = true; break; }
  }
  if (hidden) continue;
  const b = el.getBBox();
  if (b.width <= 0 || b.height <= 0) continue;
  const m = rootInv.multiply(el.getScreenCTM());
  const corners = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
    .map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
  out.push({text: txt, corners: corners});
}
return JSON.stringify({viewbox: [vb.x, vb.y, vb.width, vb.height],
                       width: svg.width.baseVal.value, height: svg.height.baseVal.value, texts: out});
"""


@dataclass
class Layout:
    viewbox: tuple[float, float, float, float]
    texts: list[tuple[str, np.ndarray]]  # (text, corners [4, 2] in viewBox units)
    unit: float  # viewBox units per point

    def overlaps(self) -> list[tuple[str, str]]:
        tol = TOLERANCE * self.unit
        pairs = []
        for (ta, a), (tb, b) in itertools.combinations(self.texts, 2):
            if _intersect(a, b, tol):
                pairs.append((ta, tb))
        return pairs

    def outside(self) -> list[str]:
        x0, y0, w, h = self.viewbox
        tol = TOLERANCE * self.unit
        return [t for t, c in self.texts
                if c[:, 0].min() < x0 - tol or c[:, 1].min() < y0 - tol
                or c[:, 0].max() > x0 + w + tol or c[:, 1].max() > y0 + h + tol]


def _intersect(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Do two convex quadrilaterals overlap by more than `tol` along every separating axis?"""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            norm = np.hypot(*edge)
            if norm == 0:
                continue
            axis = np.array([-edge[1], edge[0]]) / norm
            pa, pb = a @ axis, b @ axis
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= tol:
                return False
    return True


class Measurer:
    """One headless Chromium (Selenium, Debian's chromedriver) that lays out SVG files."""

    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        options = Options()
        binary = shutil.which("chromium") or "/usr/bin/chromium"
        options.binary_location = binary
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--no-first-run", "--window-size=1200,1000"):
            options.add_argument(flag)
        driver = shutil.which("chromedriver")
        self.driver = webdriver.Chrome(options=options, service=Service(driver) if driver else None)

    def layout(self, svg_path: str | Path) -> Layout:
        self.driver.get(Path(svg_path).resolve().as_uri())
        data = json.loads(self.driver.execute_script(_JS))
        vb = tuple(data["viewbox"])
        # the root's width / height are in CSS px (96 per inch) or pt; viewBox units per point:
        unit = vb[2] / (data["width"] * 72 / 96) if data["width"] else 1.0
        texts = [(t["text"], np.asarray(t["corners"], dtype=float)) for t in data["texts"]]
        return Layout(vb, texts, unit)

    def close(self) -> None:
        self.driver.quit()
