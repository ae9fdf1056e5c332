"""Trace: the sites one run of a stochastic function visited, in order.

``trace.nodes`` maps a site name to its message dict (``type``, ``name``,
``fn``, ``value``, ``is_observed``, ``intervened``, ``infer``, ``scale``,
``mask``, ``cond_indep_stack``, ...).

>>> import causalppl as cp
>>> def model():
...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=0.0)
>>> tr = cp.handlers.trace(model).get_trace()
>>> round(tr.log_prob_sum().item(), 4)
-0.9189
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def site_log_prob(site, scaled=True):
    """The masked (and, unless ``scaled=False``, scaled) log density of one sample site."""
    log_prob = site["fn"].log_prob(site["value"])
    mask = site["mask"]
    if mask is not None:
        log_prob = torch.where(mask, log_prob, log_prob.new_zeros(()))
    if not scaled:
        return log_prob
    scale = site["scale"]
    if not (isinstance(scale, float) and scale == 1.0):
        log_prob = log_prob * scale
    return log_prob


def contributes_log_prob(site):
    """True for sample sites that enter the joint density.

    Intervened sites (``do``) and deterministic sites contribute nothing.
    """
    return site["type"] == "sample" and not site["intervened"] and not site["infer"].get("_deterministic")


class ScoreParts(NamedTuple):
    """A site's log density split for gradient estimators (Pyro's ``ScoreParts``)."""

    log_prob: torch.Tensor
    score_function: object
    entropy_term: object


class Trace:
    """An ordered record of sites: ``nodes`` is a dict name -> site."""

    def __init__(self, graph_type="flat"):
        if graph_type not in ("flat", "dense"):
            raise ValueError(f"Trace: graph_type must be 'flat' or 'dense', got {graph_type!r}")
        self.graph_type = graph_type
        self.nodes: dict[str, dict] = {}
        self.plate_names: set[str] = set()  # every plate entered, full or subsampled
        self._succ: dict[str, set] = {}
        self._pred: dict[str, set] = {}

    def add_site(self, site):
        name = site["name"]
        if name in self.nodes and site.get("type") == "sample":
            raise ValueError(
                f"Multiple sample sites named '{name}' in one run of the model; "
                "each sample site needs a unique name"
            )
        self.nodes[name] = site

    def __contains__(self, name):
        return name in self.nodes

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    @property
    def stochastic_nodes(self):
        """Names of latent (not observed, not intervened) sample sites."""
        return [
            name for name, site in self.nodes.items()
            if contributes_log_prob(site) and not site["is_observed"]
        ]

    @property
    def observation_nodes(self):
        return [
            name for name, site in self.nodes.items()
            if contributes_log_prob(site) and site["is_observed"]
        ]

    @property
    def param_nodes(self):
        return [name for name, site in self.nodes.items() if site["type"] == "param"]

    @property
    def reparameterized_nodes(self):
        """Latent sites drawn with ``rsample`` (their gradients flow through the value)."""
        return [name for name in self.stochastic_nodes if self.nodes[name]["fn"].has_rsample]

    @property
    def nonreparam_stochastic_nodes(self):
        """Latent sites without ``rsample``: their gradients need a score-function term."""
        return [name for name in self.stochastic_nodes if not self.nodes[name]["fn"].has_rsample]

    def iter_stochastic_nodes(self):
        """``(name, site)`` for each latent sample site, in order."""
        for name in self.stochastic_nodes:
            yield name, self.nodes[name]

    def add_node(self, name, **site):
        """Record a site given as keyword fields (Pyro's ``Trace.add_node``)."""
        site.setdefault("name", name)
        self.add_site(site)

    def remove_node(self, name):
        """Drop a site and every edge into or out of it."""
        del self.nodes[name]
        for other in self._succ.pop(name, ()):
            self._pred[other].discard(name)
        for other in self._pred.pop(name, ()):
            self._succ[other].discard(name)

    def copy(self):
        """A new trace with the same sites and edges (each site dict copied, its tensors shared)."""
        new = Trace(self.graph_type)
        new.nodes = {name: dict(site) for name, site in self.nodes.items()}
        new.plate_names = set(self.plate_names)
        new._succ = {name: set(after) for name, after in self._succ.items()}
        new._pred = {name: set(before) for name, before in self._pred.items()}
        return new

    # -- the dependency graph (``graph_type="dense"``) ---------------------------

    def add_edge(self, site1, site2):
        """Record that ``site2`` may depend on ``site1`` (either is added as an empty node if new)."""
        for name in (site1, site2):
            if name not in self.nodes:
                self.nodes[name] = {"name": name}
        self._succ.setdefault(site1, set()).add(site2)
        self._pred.setdefault(site2, set()).add(site1)

    @property
    def edges(self):
        """``(before, after)`` pairs, in site order."""
        return [(name, after) for name in self.nodes for after in self._succ.get(name, ())]

    def successors(self, name):
        return set(self._succ.get(name, ()))

    def predecessors(self, name):
        return set(self._pred.get(name, ()))

    def _dfs(self, name, visited):
        """Yield ``name`` and every site reachable from it that is not in ``visited``."""
        stack = [name]
        while stack:
            current = stack.pop()
            if current in visited:
                continue
            visited.add(current)
            yield current
            stack.extend(self._succ.get(current, ()))

    def topological_sort(self, reverse=False):
        """Site names with every edge pointing forward (backward if ``reverse``)."""
        indegree = {name: len(self._pred.get(name, ())) for name in self.nodes}
        ready = [name for name, degree in indegree.items() if degree == 0]
        order = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for after in self._succ.get(name, ()):
                indegree[after] -= 1
                if indegree[after] == 0:
                    ready.append(after)
        if len(order) != len(indegree):
            raise ValueError("Trace.topological_sort: the trace's edges have a cycle")
        return order[::-1] if reverse else order

    def detach_(self):
        """Detach every recorded value from the autograd graph, in place."""
        for site in self.nodes.values():
            if isinstance(site.get("value"), torch.Tensor):
                site["value"] = site["value"].detach()

    def compute_log_prob(self, site_filter=lambda name, site: True):
        """Store each contributing site's log density under ``site["log_prob"]``."""
        for name, site in self.nodes.items():
            if contributes_log_prob(site) and site_filter(name, site) and "log_prob" not in site:
                site["log_prob"] = log_prob_of(site)
                site["log_prob_sum"] = site["log_prob"].sum()

    def compute_score_parts(self):
        """Store each latent-or-observed sample site's :class:`ScoreParts` under ``site["score_parts"]``.

        A reparameterised site's log density is its entropy term; any other's
        is its score-function term (Pyro's split).
        """
        for site in self.nodes.values():
            if contributes_log_prob(site) and "score_parts" not in site:
                log_prob = log_prob_of(site, what="score_parts")
                site.setdefault("log_prob", log_prob)
                if site["fn"].has_rsample:
                    site["score_parts"] = ScoreParts(log_prob, 0, log_prob)
                else:
                    site["score_parts"] = ScoreParts(log_prob, log_prob, 0)

    def log_prob_sum(self, site_filter=lambda name, site: True):
        """The joint log density of the recorded values (a scalar tensor)."""
        total = 0.0
        for name, site in self.nodes.items():
            if contributes_log_prob(site) and site_filter(name, site):
                total = total + log_prob_of(site, what="log_prob_sum").sum()
        return torch.as_tensor(total)

    def format_shapes(self):
        """A table of each site's batch / event shape and value shape."""
        rows = [("site", "type", "batch_shape", "event_shape", "value_shape")]
        for name, site in self.nodes.items():
            fn, value = site["fn"], site["value"]
            batch = tuple(fn.batch_shape) if fn is not None else ""
            event = tuple(fn.event_shape) if fn is not None else ""
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ""
            rows.append((name, site["type"], str(batch), str(event), str(shape)))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)

    def __repr__(self):
        return f"Trace({list(self.nodes)})"


def log_prob_of(site, scaled=True, what="log_prob"):
    """``site_log_prob`` with the site named in any error it raises (Pyro's wording)."""
    try:
        return site_log_prob(site, scaled)
    except (ValueError, RuntimeError) as err:
        raise type(err)(
            f"Error while computing {what} at site '{site['name']}':\n{err}\n"
            f"(value {_describe(site['value'])} under {site['fn']!r})"
        ) from err


def _describe(value):
    if isinstance(value, torch.Tensor) and value.numel() > 6:
        return f"tensor of shape {tuple(value.shape)}"
    return repr(value)
