"""What a model's sites depend on, and a Graphviz picture of it (Pyro's ``render_model``).

:func:`get_model_relations` runs the model once with every sample and param
value tagged by its site's name (:mod:`causalppl.ops.provenance`); the tags
that reach a site's log density are the sites it depends on directly. Plates
come from each site's plate stack. :func:`render_model` draws that as DOT:
one node per sample site (observed ones filled grey), an edge from each site
to the sites whose distributions use its value, and plates as boxed clusters
labelled with the plate's name.

>>> import torch, causalppl as cp
>>> def model(data):
...     m = cp.sample("m", cp.dist.Normal(0.0, 1.0))
...     s = cp.sample("s", cp.dist.LogNormal(0.0, 1.0))
...     with cp.plate("N", len(data)):
...         cp.sample("obs", cp.dist.Normal(m, s), obs=data)
>>> relations = get_model_relations(model, model_args=(torch.zeros(3),))
>>> relations["sample_sample"], relations["plate_sample"], relations["observed"]
({'m': [], 's': [], 'obs': ['m', 's']}, {'N': ['obs']}, ['obs'])
>>> print(render_model(model, model_args=(torch.zeros(3),)).source)  # doctest: +NORMALIZE_WHITESPACE
digraph {
    "m" [label="m" shape=ellipse style=filled fillcolor=white]
    "s" [label="s" shape=ellipse style=filled fillcolor=white]
    subgraph "cluster_N" {
        label="N" labeljust=r labelloc=b
        "obs" [label="obs" shape=ellipse style=filled fillcolor=grey]
    }
    "m" -> "obs"
    "s" -> "obs"
}
"""

from __future__ import annotations

from pathlib import Path

import torch

from causalppl.handlers import trace
from causalppl.ops.provenance import ProvenanceTensor, detach_provenance, get_provenance
from causalppl.runtime import Messenger, validation_enabled


class TrackProvenance(Messenger):
    """Tag each sample and param value with its own site name (direct dependencies only).

    ``site_filter(msg)`` picks the sites to tag; the value of any other site
    keeps the tags it was computed from (so dependencies pass through it).
    """

    def __init__(self, fn=None, site_filter=None):
        super().__init__(fn)
        self.site_filter = site_filter or (lambda msg: msg["type"] in ("sample", "param"))

    def postprocess_message(self, msg):
        if isinstance(msg["value"], torch.Tensor) and self.site_filter(msg):
            msg["value"] = ProvenanceTensor(detach_provenance(msg["value"]), frozenset({msg["name"]}))


def is_sample_site(msg, include_deterministic=False):
    """A sample site for :func:`get_dependencies`: not a point mass (deterministic) nor masked out, as in Pyro."""
    if msg["type"] != "sample":
        return False
    if include_deterministic:
        return True
    if msg["is_observed"] and msg["mask"] is False:
        return False
    fn = msg["fn"]
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).__name__ != "Delta"


def get_dependencies(model, model_args=(), model_kwargs=None, include_deterministic=False):
    """Which sample sites each site depends on, in the prior and in the posterior (Pyro's ``get_dependencies``).

    Returns ``{"prior_dependencies": {d: {u: set(), ...}}, "posterior_dependencies": {u: {v: plates}}}``:
    in the prior each site depends on itself and the sites its distribution
    uses; in the posterior each latent site depends on the sites downstream of
    it and, after moralisation, on the other parents of its children. The
    plates in a posterior entry are those along which the two sites are
    coupled (e.g. a plate summed over downstream). Deterministic sites
    (point masses) are passed through unless ``include_deterministic``.

    >>> import causalppl as cp
    >>> def model():
    ...     a = cp.sample("a", cp.dist.Normal(0.0, 1.0))
    ...     cp.sample("b", cp.dist.Normal(a, 1.0), obs=torch.tensor(0.0))
    >>> deps = get_dependencies(model)
    >>> deps["prior_dependencies"]
    {'a': {'a': set()}, 'b': {'b': set(), 'a': set()}}
    >>> deps["posterior_dependencies"]
    {'a': {'a': set(), 'b': set()}}
    """
    model_kwargs = {} if model_kwargs is None else dict(model_kwargs)

    def tagged(msg):
        return is_sample_site(msg, include_deterministic)

    with torch.random.fork_rng(), torch.no_grad(), validation_enabled(False), TrackProvenance(site_filter=tagged):
        tr = trace(model).get_trace(*tuple(model_args), **model_kwargs)
    sites = [site for site in tr.nodes.values() if tagged(site)]
    observed = {site["name"] for site in sites if site["is_observed"]}
    plates = {site["name"]: {frame.name for frame in site["cond_indep_stack"] if frame.dim is not None}
              for site in sites}

    prior = {site["name"]: {site["name"]: set()} for site in sites}
    for i, downstream in enumerate(sites):
        found = get_provenance(downstream["fn"].log_prob(downstream["value"]))
        for upstream in sites[:i]:
            if upstream["name"] in found:
                prior[downstream["name"]][upstream["name"]] = set()

    posterior = {name: {} for name in plates if name not in observed}
    for d, upstreams in prior.items():
        for u, coupled in upstreams.items():
            if u not in observed:
                posterior[u][d] = set(coupled)

    # Moralise: latent parents of a common child depend on each other, coupled
    # along the plates they share that the child does not have.
    order = {site["name"]: i for i, site in enumerate(reversed(sites))}
    for d, upstreams in prior.items():
        latent = [u for u in upstreams if u not in observed]
        for u1 in latent:
            for u2 in latent:
                if order[u1] <= order[u2]:
                    posterior[u2].setdefault(u1, set()).update((plates[u1] & plates[u2]) - plates[d])
    return {"prior_dependencies": prior, "posterior_dependencies": posterior}


def _dist_name(fn):
    """The family of a site's distribution, under ``Independent``/expanded/masked wrappers."""
    while hasattr(fn, "base_dist") and type(fn).__name__ in ("Independent", "ExpandedDistribution",
                                                            "MaskedDistribution"):
        fn = fn.base_dist
    return type(fn).__name__


def _site_parents(site, sample_names):
    """Names of the sites a sample site's log density (or deterministic value) is computed from."""
    if site["infer"].get("_deterministic"):
        found = get_provenance(site["fn"].v)
    else:
        try:
            found = get_provenance(site["fn"].log_prob(site["value"]))
        except (ValueError, RuntimeError, NotImplementedError):
            found = frozenset()
    return [name for name in sample_names if name in found and name != site["name"]]


def get_model_relations(model, model_args=None, model_kwargs=None):
    """How a model's sites relate, from one run (Pyro's ``get_model_relations``).

    Returns a dict:

    - ``sample_sample``: site -> the sample sites its distribution uses (in model order);
    - ``sample_param``: site -> the param sites its distribution uses;
    - ``sample_dist``: site -> its distribution's family name (``"Deterministic"`` for deterministic sites);
    - ``param_constraint``: param -> its constraint, as text;
    - ``plate_sample``: plate -> the sample sites inside it;
    - ``observed``: the observed sample sites;
    - ``deterministic``: the deterministic sites;
    - ``plate_parent``: plate -> the plate it sits in (None at the top).

    The run is seeded apart from the caller's RNG state, without gradients
    and with validation off (torch's argument checks cannot see through the
    tagged tensors).
    """
    model_args = () if model_args is None else tuple(model_args)
    model_kwargs = {} if model_kwargs is None else dict(model_kwargs)
    with torch.random.fork_rng(), torch.no_grad(), validation_enabled(False), TrackProvenance():
        tr = trace(model).get_trace(*model_args, **model_kwargs)
    samples = {name: site for name, site in tr.nodes.items() if site["type"] == "sample"}
    params = {name: site for name, site in tr.nodes.items() if site["type"] == "param"}
    relations = {
        "sample_sample": {name: _site_parents(site, samples) for name, site in samples.items()},
        "sample_param": {name: _site_parents(site, params) for name, site in samples.items()},
        "sample_dist": {name: "Deterministic" if site["infer"].get("_deterministic") else _dist_name(site["fn"])
                        for name, site in samples.items()},
        "param_constraint": {name: str(site["args"][1]) for name, site in params.items()},
        "plate_sample": {},
        "observed": [name for name, site in samples.items()
                     if site["is_observed"] and not site["infer"].get("_deterministic")],
        "deterministic": [name for name, site in samples.items() if site["infer"].get("_deterministic")],
        "plate_parent": {},
    }
    for name, site in samples.items():
        # cond_indep_stack lists the innermost plate first.
        frames = [frame.name for frame in site["cond_indep_stack"]]
        for i, plate_name in enumerate(frames):
            relations["plate_sample"].setdefault(plate_name, []).append(name)
            relations["plate_parent"].setdefault(plate_name, frames[i + 1] if i + 1 < len(frames) else None)
    return relations


class ModelGraph:
    """A rendered model: DOT text (``.source``) that Graphviz can draw.

    ``render(path)`` / ``write(path)`` write a ``.png``, ``.svg``, ``.pdf``
    (drawn by Graphviz's ``dot``) or ``.dot``/``.gv`` (the text) file by its
    suffix; ``pipe(format)`` returns the drawing's bytes; notebooks show the SVG.
    """

    def __init__(self, source):
        self.source = source

    def __str__(self):
        return self.source

    def __repr__(self):
        return f"ModelGraph({len(self.source)} characters of DOT; .source, .render(path), .pipe(format))"

    def pipe(self, format="svg"):
        from causalppl.graph.draw import run_dot

        return run_dot(self.source, format, "ModelGraph.source is the DOT text without it.")

    def render(self, filename, format=None):
        """Write the picture to ``filename`` (format from ``format`` or the suffix); return its path."""
        path = Path(filename)
        format = format or path.suffix.lstrip(".").lower() or "pdf"
        if not path.suffix:
            path = path.with_suffix("." + format)
        if format in ("dot", "gv"):
            path.write_text(self.source, encoding="utf-8")
        else:
            path.write_bytes(self.pipe(format))
        return path

    write = render

    def _repr_svg_(self):
        return self.pipe("svg").decode("utf-8")

    def to_pydot(self):
        """The graph as a ``pydot.Dot``."""
        import pydot

        return pydot.graph_from_dot_data(self.source)[0]


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_model(model, model_args=None, model_kwargs=None, filename=None, render_distributions=False,
                 render_params=False, render_deterministic=False):
    """Draw a model's sites, their dependencies and plates (Pyro's ``render_model``); a :class:`ModelGraph`.

    ``render_distributions`` adds a legend of each site's family
    (``x ~ Normal``); ``render_params`` draws param sites (unshaped nodes)
    with edges into the sites that use them; ``render_deterministic`` draws
    deterministic sites as boxes (otherwise their inputs are joined straight
    to their users). With ``filename`` the picture is also written there.
    """
    relations = get_model_relations(model, model_args, model_kwargs)
    parents = {name: list(ups) for name, ups in relations["sample_sample"].items()}
    hidden = set() if render_deterministic else set(relations["deterministic"])
    for name in hidden:  # join a hidden deterministic site's inputs to its users
        for child, ups in parents.items():
            if name in ups:
                ups.remove(name)
                ups.extend(up for up in parents[name] if up not in ups and up != child)
    nodes = [name for name in parents if name not in hidden]
    used_params = []
    if render_params:
        for name in nodes:
            used_params.extend(p for p in relations["sample_param"][name] if p not in used_params)

    # Each node goes in the cluster of its full plate stack; clusters nest by stack.
    site_stack = {name: () for name in nodes}
    for plate_name, names in relations["plate_sample"].items():
        for name in names:
            if name in site_stack:
                site_stack[name] = site_stack[name] + (plate_name,)
    stacks = {}
    for name in nodes:
        stack = _outer_to_inner(site_stack[name], relations["plate_parent"])
        for depth in range(len(stack) + 1):
            stacks.setdefault(stack[:depth], [])
        stacks[stack].append(name)

    lines = ["digraph {"]

    def node_line(name, indent):
        if name in relations["sample_dist"] and relations["sample_dist"][name] == "Deterministic":
            shape, fill = "box", "white"
        elif name in relations["sample_dist"]:
            shape, fill = "ellipse", "grey" if name in relations["observed"] else "white"
        else:
            shape, fill = "plain", "white"
        label = name.replace("$$$", "..")
        return f"{indent}{_quote(name)} [label={_quote(label)} shape={shape} style=filled fillcolor={fill}]"

    def emit(stack, indent):
        if stack:
            lines.append(f"{indent[:-4]}subgraph {_quote('cluster_' + '/'.join(stack))} {{")
            lines.append(f"{indent}label={_quote(stack[-1])} labeljust=r labelloc=b")
        for name in stacks[stack]:
            lines.append(node_line(name, indent))
        for child in stacks:
            if len(child) == len(stack) + 1 and child[:len(stack)] == stack:
                emit(child, indent + "    ")
        if stack:
            lines.append(f"{indent[:-4]}}}")

    emit((), "    ")
    for name in used_params:
        lines.append(node_line(name, "    "))
    for name in nodes:
        for up in parents[name]:
            lines.append(f"    {_quote(up)} -> {_quote(name)}")
        if render_params:
            for up in relations["sample_param"][name]:
                lines.append(f"    {_quote(up)} -> {_quote(name)}")
    if render_distributions:
        legend = [f"{name} ~ {relations['sample_dist'][name]}" for name in nodes]
        if render_params:
            legend += [f"{name} ∈ {relations['param_constraint'][name]}" for name in used_params]
        label = "".join(_quote(entry)[1:-1] + "\\l" for entry in legend)
        lines.append(f'    "distribution_description_node" [label="{label}" shape=plaintext]')
    lines.append("}")
    graph = ModelGraph("\n".join(lines) + "\n")
    if filename is not None:
        graph.render(filename)
    return graph


def _outer_to_inner(plates, plate_parent):
    """Order a site's plates from the outermost in, by the recorded nesting."""
    def depth(name):
        seen, count = set(), 0
        while plate_parent.get(name) is not None and name not in seen:
            seen.add(name)
            name = plate_parent[name]
            count += 1
        return count
    return tuple(sorted(plates, key=depth))


__all__ = ["ModelGraph", "TrackProvenance", "get_dependencies", "get_model_relations", "is_sample_site", "render_model"]
