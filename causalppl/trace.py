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
        self.full_plates: dict[str, int] = {}  # plate name -> size, for plates that used all their rows
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
        new.full_plates = dict(self.full_plates)
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

    neighbors = successors  # networkx's name, so nx.descendants(trace, name) works on a dense trace

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
        """Store each contributing site's log density under ``site["log_prob"]`` (and its sum, ``"log_prob_sum"``)."""
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

    def format_shapes(self, title="Trace Shapes:", last_site=None):
        """Pyro's table of shapes: each param's, and each sample site's distribution, value and log_prob.

        Batch dims stand left of ``|``, event dims right of it; plates are
        listed (with their sizes) before the first site inside them, and
        ``log_prob`` rows appear once :meth:`compute_log_prob` has run.

        >>> import torch, causalppl as cp
        >>> def model():
        ...     with cp.plate("N", 3):
        ...         cp.sample("x", cp.dist.Normal(torch.zeros(3, 2), 1.0).to_event(1))
        >>> print(cp.trace(model).get_trace().format_shapes())
        Trace Shapes:
         Param Sites:
        Sample Sites:
               N dist   |
                value 3 |
               x dist 3 | 2
                value 3 | 2
        """
        if not self.nodes:
            return title
        rows = [[title], ["Param Sites:"]]
        for name, site in self.nodes.items():
            if site["type"] == "param":
                rows.append([name, None] + [str(size) for size in site["value"].shape])
            if name == last_site:
                break
        rows.append(["Sample Sites:"])
        shown_plates = set()
        for name, site in self.nodes.items():
            if site["type"] == "plate":
                shown_plates.add(name)
                rows += _shape_rows(name, (), (), site["value"].shape, 0, None)
            elif site["type"] == "sample":
                for frame in reversed(site["cond_indep_stack"]):  # outermost first
                    if frame.name not in shown_plates and frame.dim is not None:
                        shown_plates.add(frame.name)
                        size = frame.subsample_size if frame.subsample_size != -1 else "?"
                        rows += _shape_rows(frame.name, (), (), (size,), 0,
                                            () if "log_prob" in site else None)
                fn = site["fn"]
                value = site["value"]
                log_prob = site.get("log_prob")
                rows += _shape_rows(name, fn.batch_shape, fn.event_shape, getattr(value, "shape", ()),
                                    len(fn.event_shape), None if log_prob is None else log_prob.shape)
            if name == last_site:
                break
        return _format_table(rows)

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


def _shape_rows(name, batch_shape, event_shape, value_shape, event_dim, log_prob_shape):
    """The ``dist``, ``value`` (and ``log_prob``) rows of one site; ``None`` separates the columns."""
    value_batch = value_shape[:len(value_shape) - event_dim]
    value_event = value_shape[len(value_shape) - event_dim:]
    def row(label, batch, event):
        return [label, None] + [str(size) for size in batch] + ["|", None] + [str(size) for size in event]

    rows = [row(name + " dist", batch_shape, event_shape), row("value", value_batch, value_event)]
    if log_prob_shape is not None:
        rows.append(row("log_prob", log_prob_shape, ()))
    return rows


def _format_table(rows):
    """Right-justify cells in three column groups (separated by None), as Pyro's ``format_shapes``."""
    groups = [[[], [], []] for _ in rows]
    for row, cols in zip(rows, groups):
        j = 0
        for cell in row:
            if cell is None:
                j += 1
            else:
                cols[j].append(cell)
    widths = [max(len(cols[j]) for cols in groups) for j in range(3)]
    cells = []
    for cols in groups:
        padded = [[""] * (w - len(c)) + c if side == "r" else c + [""] * (w - len(c))
                  for w, c, side in zip(widths, cols, "rrl")]
        cells.append(sum(padded, []))
    sizes = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
    return "\n".join(" ".join(cell.rjust(size) for cell, size in zip(row, sizes)).rstrip() for row in cells)
