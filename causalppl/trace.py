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


class Trace:
    """An ordered record of sites: ``nodes`` is a dict name -> site."""

    def __init__(self, graph_type="flat"):
        if graph_type not in ("flat", "dense"):
            raise ValueError(f"Trace: graph_type must be 'flat' or 'dense', got {graph_type!r}")
        self.graph_type = graph_type
        self.nodes: dict[str, dict] = {}
        self.plate_names: set[str] = set()  # every plate entered, full or subsampled

    def add_site(self, site):
        name = site["name"]
        if name in self.nodes and site["type"] == "sample":
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
        del self.nodes[name]

    def copy(self):
        """A new trace with the same sites (each site dict copied, its tensors shared)."""
        new = Trace(self.graph_type)
        new.nodes = {name: dict(site) for name, site in self.nodes.items()}
        new.plate_names = set(self.plate_names)
        return new

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
