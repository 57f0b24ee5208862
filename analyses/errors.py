"""The one error analyses raise for bad input: it names the run (or array) and what is wrong."""
from __future__ import annotations


class AnalysisError(ValueError):
    """An analysis cannot run on its input (empty run, NaN weights, a statistic the run cannot give).

    `where` names the run directory or the in-memory input, `problem` the bare description.
    """

    def __init__(self, where: object, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class NaNWeightError(AnalysisError):
    """NaN depth-attention weight for a valid source. Routing kernels raise it; streaming over a stored run
    turns it into the reader's RunError, which names the chunk file."""
