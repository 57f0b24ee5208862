"""Compare: two runs side by side on one shared colour scale, and their difference."""
from __future__ import annotations

from .. import views
from ..components import Runs
from ..panels import Drawn, Page, Panel, Poll, Row, View

RUN = Panel("compare-a", "compare_run", export="run")
OTHER = Panel("compare-b", "compare_other", export="other run")
DIFFERENCE = Panel("compare-diff", "compare", export="difference")


def draw(cat, p) -> Drawn:
    """The three figures from one comparison (they share its colour scale)."""
    run, other, difference = views.compare(cat, p)
    return Drawn((difference, run, other))


PAGE = Page(
    "/compare", "Compare", "Two runs on one colour scale",
    controls=([Runs(baseline=False, other="other")],),
    body=(Row(RUN, OTHER), DIFFERENCE),
    views=(View("Compare", (DIFFERENCE, RUN, OTHER), ("run", "other"), draw=draw, message="compare-msg",
                poll=Poll("compare-poll")),),
)
