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

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add_site(self, site):
        name = site["name"]
        if name in self.nodes and site["type"] == "sample":
            raise ValueError(
                f"site '{name}' appears twice in one run of the model; "
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

    def compute_log_prob(self, site_filter=lambda name, site: True):
        """Store each contributing site's log density under ``site["log_prob"]`` (and its sum, ``"log_prob_sum"``)."""
        for name, site in self.nodes.items():
            if contributes_log_prob(site) and site_filter(name, site) and "log_prob" not in site:
                site["log_prob"] = log_prob_of(site)
                site["log_prob_sum"] = site["log_prob"].sum()

    def log_prob_sum(self, site_filter=lambda name, site: True):
        """The joint log density of the recorded values (a scalar tensor)."""
        total = 0.0
        for name, site in self.nodes.items():
            if contributes_log_prob(site) and site_filter(name, site):
                total = total + log_prob_of(site).sum()
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


def log_prob_of(site, scaled=True):
    """``site_log_prob`` with the site named in any error it raises."""
    try:
        return site_log_prob(site, scaled)
    except (ValueError, RuntimeError) as err:
        raise type(err)(
            f"sample site '{site['name']}': log_prob of value {_describe(site['value'])} "
            f"under {site['fn']!r} failed: {err}"
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
