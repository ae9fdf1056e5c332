"""Samples: the dict ``scm.sample(n)`` returns (node -> tensor), with ``to_frame()`` and ``to_dict()``.

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> s = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes")).sample(3)
>>> list(s.to_frame()["t"].cat.categories), len(s.to_dict()["t"])
(['no', 'yes'], 3)
"""

from __future__ import annotations

from causalppl.tables import pandas, plain


class Samples(dict):
    """A dict node -> tensor of draws; ``labels`` maps labelled nodes to their state labels."""

    def __init__(self, values, labels=None):
        super().__init__(values)
        self.labels = dict(labels or {})

    def to_dict(self):
        """Node -> list of values (codes for labelled nodes)."""
        return {name: plain(value) for name, value in self.items()}

    def to_frame(self, labels=True):
        """A pandas DataFrame, one row per draw; labelled nodes as pandas categories of their labels."""
        pd = pandas()
        columns = {}
        for name, value in self.items():
            value = value.detach().cpu()
            if value.dim() > 1:
                raise ValueError(f"to_frame: node '{name}' has draws of shape {tuple(value.shape)}; "
                                 "a column holds one value per row")
            data = value.reshape(-1).tolist()
            names = self.labels.get(name)
            if labels and names is not None:
                data = pd.Categorical.from_codes([int(v) for v in data], categories=list(names))
            columns[name] = data
        return pd.DataFrame(columns)
