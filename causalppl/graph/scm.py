"""The structural causal model: a networkx DAG whose nodes carry mechanisms.

>>> import causalppl as cp
>>> scm = cp.SCM()
>>> _ = scm.add("weight", "Normal(guess, 1.0)")
>>> _ = scm.add("measurement", "Normal(weight, 0.75)")
>>> scm.nodes, scm.inputs
(('weight', 'measurement'), ('guess',))
>>> list(scm.graph.edges)
[('weight', 'measurement')]
>>> scm.do(weight=9.0).parents("measurement")
('weight',)
"""

from __future__ import annotations

import copy
import unicodedata

import networkx as nx
import torch

from causalppl.graph.expr import expression_meaning
from causalppl.graph.lower import RESERVED, LoweredModel, node_columns
from causalppl.graph.mechanism import Mechanism, as_mechanism, is_unspecified, mechanism_text, missing_mechanism
from causalppl.graph.samples import Samples
from causalppl.graph.values import check_count, check_in_support, check_value, to_tensor
from causalppl.params import ParamStore


class ModelState:
    """What an SCM shares with the SCMs that surgery makes from it.

    ``params``: the SCM's own :class:`ParamStore` (its mechanisms' ``cp.param``
    sites read it, never the global store). ``posterior``: after a Bayesian
    fit, draws of the mechanisms' global weight sites (site -> tensor with a
    leading draws dim), which queries integrate over. ``fit``: what the last
    fit needs to be repeated (data, options), for the bootstrap.
    """

    def __init__(self):
        self.params = ParamStore()
        self.posterior = None
        self.fit = None
        self.choices = None  # from_graph: node -> why its mechanism was chosen (plain strings)

    def copy(self):
        """An independent copy: params cloned, posterior draws shared (they are never modified)."""
        new = ModelState()
        new.params.set_state(self.params.get_state())
        new.posterior = self.posterior
        new.fit = self.fit
        new.choices = self.choices
        return new


def check_name(name, what="node"):
    """Node and parent names: identifiers, not reserved, not read as something else in an expression.

    One rule for every way a node is made (``add``, ``SCM(G)``, DOT files):
    names of expression constants and functions (``e``, ``pi``, ``exp``,
    ``Normal``, ...) are refused, since an expression would read them as the
    constant or function, not the node. Names that Unicode NFKC-normalises
    into another name (a fullwidth ``ｘ``) are refused: Python reads them as
    that other name.
    """
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"{what} name {name!r} must be a Python identifier not starting with '_'")
    if name in RESERVED:
        raise ValueError(f"{what} name '{name}' is reserved (the lowered model takes {sorted(RESERVED)})")
    normal = name if name.isascii() else unicodedata.normalize("NFKC", name)
    if normal != name:
        raise ValueError(f"{what} name {name!r} is refused: Unicode normalises it to {normal!r}, another name; "
                         f"write {normal!r}")
    meaning = expression_meaning(name)
    if meaning is not None:
        raise ValueError(f"{what} name '{name}' is refused: in expressions '{name}' is {meaning}; "
                         f"choose another name, such as '{name}_'")


def _check_labels(node, labels):
    """``labels`` as a tuple of at least two distinct state labels (or ``None``)."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise TypeError(f"node '{node}': labels must be a sequence of state labels such as "
                        f"('no', 'yes'), got {labels!r}")
    labels = tuple(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"node '{node}': labels must be at least two distinct state labels, got {labels!r}")
    return labels


class CycleError(nx.NetworkXUnfeasible, ValueError):
    """Surgery that would make the graph cyclic (both a ``NetworkXUnfeasible`` and a ``ValueError``)."""


class SCMGraph(nx.DiGraph):
    """``scm.graph``: a DiGraph of plain attributes (so ``nx.write_gml`` works) that also keeps the
    :class:`Mechanism` objects, in ``mechanisms``, for ``SCM(scm.graph)``.

    Node attributes: ``mechanism`` (text), ``latent``, ``labels``, and
    ``observed`` / ``intervened`` values (a float, or a list for a tensor).
    """

    mechanisms = {}


def plain_value(value):
    """A tensor as a float (one element) or a nested list: plain data for networkx writers.

    >>> plain_value(torch.tensor(2.0)), plain_value(torch.tensor([1, 2]))
    (2.0, [1.0, 2.0])
    """
    value = torch.as_tensor(value).detach().cpu().double()
    return float(value) if value.numel() == 1 and value.dim() == 0 else value.tolist()


def code_label(labels, value):
    """The label a scalar code ``value`` stands for, or ``None`` (no labels, or not one of the codes).

    >>> code_label(("no", "yes"), torch.tensor(1.0)), code_label(("no", "yes"), 2.5), code_label(None, 1)
    ('yes', None, None)
    """
    if labels is None:
        return None
    value = torch.as_tensor(value)
    if value.numel() != 1:
        return None
    number = float(value.reshape(()))
    if number.is_integer() and 0 <= number < len(labels):
        return labels[int(number)]
    return None


class SCM:
    """A structural causal model.

    ``SCM()`` starts empty; :meth:`add` adds nodes. ``SCM(G)`` builds one
    from a ``networkx.DiGraph`` whose nodes carry a ``mechanism`` attribute
    (and optionally ``latent=True``); its edges must agree with the
    mechanisms' parents.
    """

    def __init__(self, graph=None):
        self._mechanisms: dict[str, Mechanism] = {}
        self._latent: set[str] = set()
        self._observed: dict[str, torch.Tensor] = {}
        self._interventions: dict[str, torch.Tensor] = {}
        self._soft: dict = {}  # node -> Shift or Stochastic (see causalppl.graph.intervention)
        self._replaced: dict = {}  # node -> Replace: its mechanism replaced
        self._labels: dict[str, tuple] = {}
        self._meta: dict = {}  # graph-level facts a file gave: rankdir, name, roles (node -> role)
        self._cache = {}
        self._state = ModelState()
        if graph is not None:
            self._add_graph(graph)

    # -- building --------------------------------------------------------------

    def _add_graph(self, graph):
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"SCM(G) needs a networkx.DiGraph, got {type(graph).__name__}")
        kept = getattr(graph, "mechanisms", {})  # scm.graph keeps the objects beside their texts
        for node, attrs in graph.nodes(data=True):
            if "mechanism" not in attrs and node not in kept:
                raise ValueError(f"node '{node}' has no 'mechanism' attribute")
            mechanism = kept.get(node, attrs.get("mechanism"))
            self._set(node, mechanism, bool(attrs.get("latent", False)), attrs.get("labels"))
        self._check_acyclic()
        for node in graph.nodes:
            declared = set(graph.predecessors(node))
            used = {p for p in self._mechanisms[node].parents if p in self._mechanisms}
            if declared != used:
                extra = sorted(declared - used)
                missing = sorted(used - declared)
                problems = []
                if extra:
                    problems.append(f"edges from {extra} that its mechanism does not use")
                if missing:
                    problems.append(f"no edges from {missing} although its mechanism uses them")
                raise ValueError(
                    f"node '{node}': the graph has {' and '.join(problems)} "
                    f"(mechanism parents: {list(self._mechanisms[node].parents)})"
                )

    @classmethod
    def _from_parts(cls, mechanisms, latent=(), labels=None):
        """Many nodes at once (file readers): each checked as :meth:`add` checks it, the DAG once.

        ``mechanisms``: node -> mechanism, in insertion order; ``labels``: node -> state labels.
        Edges are the mechanisms' parents, so there are none to check against them.
        """
        scm = cls()
        labels = labels or {}
        for name, mechanism in mechanisms.items():
            scm._set(name, mechanism, name in latent, labels.get(name))
        scm._check_acyclic()
        seen = set()
        for name, mechanism in scm._mechanisms.items():
            if any(parent in scm._mechanisms and parent not in seen for parent in mechanism.parents):
                break
            seen.add(name)
        else:  # given in a topological order: that is the order `nodes` would sort them into
            scm._cache["order"] = tuple(scm._mechanisms)
        return scm

    @classmethod
    def from_graph(cls, graph, data=None, mechanisms="auto", bayesian=False):
        """An SCM over ``graph`` with learnable mechanisms; see :func:`causalppl.causal.learn.from_graph`.

        >>> import causalppl as cp
        >>> cp.SCM.from_graph([("x", "y")]).mechanism("y").fn.text
        'LinearGaussian(x)'
        """
        from causalppl.causal.learn import from_graph  # the graph layer must not import causal/ eagerly
        from causalppl.graph.bulk import paused_gc

        with paused_gc():  # a 100,000-node graph: see causalppl.graph.bulk
            return from_graph(graph, data=data, mechanisms=mechanisms, bayesian=bayesian)

    def add(self, name, mechanism, latent=False, labels=None):
        """Add node ``name`` with ``mechanism``; return the SCM (so calls chain).

        Parent names that are not (yet) nodes are model *inputs*. ``latent``
        marks a node that is never observed (identification respects it).
        ``labels`` names a discrete node's states in code order: code ``k``
        is ``labels[k]``, and :meth:`do`, :meth:`condition` and the queries
        accept the labels in place of the codes.

        >>> import causalppl as cp
        >>> scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes"))
        >>> scm.labels("t"), scm.do(t="yes").interventions["t"]
        (('no', 'yes'), tensor(1.))
        """
        if name in self._mechanisms:
            raise ValueError(f"node '{name}' already exists; build a new SCM to change a mechanism")
        self._set(name, mechanism, latent, labels)
        try:
            self._check_acyclic(name)
        except nx.NetworkXUnfeasible:
            del self._mechanisms[name]
            self._latent.discard(name)
            self._labels.pop(name, None)
            self._cache.clear()
            raise
        return self

    def _set(self, name, mechanism, latent, labels=None):
        check_name(name)
        mechanism = as_mechanism(mechanism, node=name)
        for parent in mechanism.parents:
            check_name(parent, what=f"parent of node '{name}':")
        if name in mechanism.parents:
            raise nx.NetworkXUnfeasible(f"node '{name}' lists itself as a parent (cycle {name} -> {name})")
        labels = _check_labels(name, labels)
        self._mechanisms[name] = mechanism
        if latent:
            self._latent.add(name)
        if labels is not None:
            self._labels[name] = labels
        self._cache.clear()

    def _check_acyclic(self, node=None):
        graph = self._build_graph()
        if nx.is_directed_acyclic_graph(graph):
            self._cache["graph"] = nx.freeze(graph)  # built anyway: keep it for .graph
        else:
            cycle = nx.find_cycle(graph, source=node)
            path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
            where = f"adding node '{node}' creates" if node is not None else "the graph has"
            raise nx.NetworkXUnfeasible(f"{where} the cycle {path}")

    # -- reading -----------------------------------------------------------------

    def _build_graph(self):
        graph = SCMGraph()
        graph.mechanisms = {node: self._effective(node) for node in self._mechanisms}
        graph.graph.update({key: value for key, value in self._meta.items() if value})
        for node in self._mechanisms:
            labels = self.labels(node)
            soft = self._soft.get(node)
            graph.add_node(
                node,
                mechanism=mechanism_text(self._natural(node)),
                latent=node in self._latent,
                **({"labels": labels} if labels is not None else {}),
                **({"observed": plain_value(self._observed[node])} if node in self._observed else {}),
                **({"intervened": plain_value(self._interventions[node])} if node in self._interventions else {}),
                **({"replaced": True} if node in self._replaced else {}),
                **({soft.kind: soft.describe()} if soft is not None else {}),
            )
        for node, mechanism in graph.mechanisms.items():
            if node in self._interventions:
                continue  # do() cuts the incoming edges
            for parent in mechanism.parents:
                if parent in self._mechanisms:
                    graph.add_edge(parent, node)
        return graph

    @property
    def graph(self):
        """The DAG as a (frozen) ``networkx.DiGraph``: every networkx algorithm applies.

        Node attributes are plain data (``nx.write_gml`` writes them):
        ``mechanism`` (its text), ``latent``, ``labels``, and ``observed`` /
        ``intervened`` values after surgery. Graph attributes: what a file
        gave (``rankdir``, ``roles``). ``SCM(scm.graph)`` rebuilds the SCM.
        """
        if "graph" not in self._cache:
            self._cache["graph"] = nx.freeze(self._build_graph())
        return self._cache["graph"]

    @property
    def nodes(self):
        """Node names in topological order (ties broken by insertion order)."""
        if "order" not in self._cache:
            position = {node: i for i, node in enumerate(self._mechanisms)}
            order = nx.lexicographical_topological_sort(self.graph, key=position.__getitem__)
            self._cache["order"] = tuple(order)
        return self._cache["order"]

    @property
    def inputs(self):
        """Names the mechanisms use that are not nodes: given when the model is called."""
        if "inputs" not in self._cache:
            seen = {}
            for node in self._mechanisms:
                if node in self._interventions:
                    continue
                for parent in self._effective(node).parents:
                    if parent not in self._mechanisms:
                        seen[parent] = None
            self._cache["inputs"] = tuple(seen)
        return self._cache["inputs"]

    def parents(self, node):
        """The parent nodes of ``node`` (inputs excluded; none after ``do``)."""
        self._require(node)
        return tuple(self.graph.predecessors(node))

    def mechanism(self, node):
        """The mechanism ``node`` runs: its own, replaced (:meth:`replace`), or under a shift or
        stochastic intervention (:meth:`do`)."""
        self._require(node)
        return self._effective(node)

    def natural_mechanism(self, node):
        """The mechanism ``node`` has before a shift or stochastic intervention (a replacement's, if replaced)."""
        self._require(node)
        return self._natural(node)

    def _natural(self, node):
        found = self._replaced.get(node) if self._replaced else None
        return found.mechanism if found is not None else self._mechanisms[node]

    def _effective(self, node):
        if not self._soft or node not in self._soft:
            return self._natural(node)
        effective = self._cache.setdefault("effective", {})
        if node not in effective:
            effective[node] = self._soft[node].effective(self._natural(node))
        return effective[node]

    def labels(self, node):
        """The state labels of discrete ``node`` in code order, or ``None`` (no labels).

        Labels given to :meth:`add` come first; otherwise a mechanism's own
        ``labels`` attribute (learned categorical mechanisms carry one).

        >>> import causalppl as cp
        >>> scm = cp.SCM().add("c", "Categorical(probs=[0.2, 0.3, 0.5])", labels=("new", "returning", "loyal"))
        >>> scm.add("x", "Normal(0, 1)").labels("c"), scm.labels("x")
        (('new', 'returning', 'loyal'), None)
        """
        self._require(node)
        if node in self._labels:
            return self._labels[node]
        found = getattr(self._natural(node).fn, "labels", None)
        return tuple(found) if found is not None else None

    def encode(self, node, value):
        """``value`` for ``node`` as a tensor of codes: a label becomes its code, numbers stay.

        A value equal to one of the labels is that label, so numeric labels
        (``labels=(1, 2, 3)``) take precedence over codes.

        Raises ``ValueError`` naming the node for an unknown label (listing
        its labels), a label given to a node without labels, a number that
        is not one of a labelled node's codes, or a value that is not a
        number at all (``None``, a dict, a ragged list); see
        :func:`causalppl.graph.values.to_tensor`.

        >>> import causalppl as cp
        >>> scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes"))
        >>> scm.encode("t", "yes"), scm.encode("t", ["no", "yes", "yes"]), scm.encode("t", 0.0)
        (tensor(1.), tensor([0., 1., 1.]), tensor(0.))
        """
        return to_tensor(node, value, self.labels(node))

    def to_networkx(self):
        """A mutable, plain copy of :attr:`graph` (a ``networkx.DiGraph`` of plain attributes).

        >>> import causalppl as cp, networkx as nx
        >>> G = cp.graphs.load("confounded").to_networkx()
        >>> sum(line.strip() == "node [" for line in nx.generate_gml(G))
        3
        """
        return nx.DiGraph(self.graph)

    @property
    def roles(self):
        """Node -> role a file declared (dagitty's ``exposure``, ``outcome``, ``adjusted``, ...)."""
        return dict(self._meta.get("roles", {}))

    @property
    def specified(self):
        """False when some node has no mechanism (a structure-only graph): queries need mechanisms."""
        return not any(is_unspecified(m) for m in self._mechanisms.values())

    def require_mechanisms(self):
        """Raise :class:`~causalppl.graph.mechanism.MissingMechanism` naming the nodes without one."""
        missing = [node for node, m in self._mechanisms.items() if is_unspecified(m)]
        if missing:
            raise missing_mechanism(missing)

    @property
    def latent(self):
        return frozenset(self._latent)

    @property
    def observed(self):
        """Observed node -> value (a copy)."""
        return dict(self._observed)

    @property
    def interventions(self):
        """Node set by ``do(node=value)`` -> its value (a copy); see :attr:`soft_interventions` for the others."""
        return dict(self._interventions)

    @property
    def soft_interventions(self):
        """Node -> its shift, stochastic intervention or replacement (:mod:`causalppl.graph.intervention`).

        A replaced node that is also shifted shows its shift; :attr:`replaced` lists the replacements.

        >>> import causalppl as cp
        >>> scm = cp.graphs.load("confounded").replace(x="Normal(0, 2)").do(z="Bernoulli(0.5)")
        >>> scm.soft_interventions
        {'z': stochastic(Bernoulli(0.5)), 'x': replace(Normal(0, 2))}
        """
        found = dict(self._replaced)
        found.update(self._soft)
        return {node: found[node] for node in self._mechanisms if node in found}

    @property
    def replaced(self):
        """Node -> its :class:`~causalppl.graph.intervention.Replace` (a copy)."""
        return dict(self._replaced)

    def _require(self, *names):
        for name in names:
            if name not in self._mechanisms:
                known = ", ".join(self._mechanisms) or "none"
                raise KeyError(f"'{name}' is not a node of this SCM (nodes: {known})")

    def __contains__(self, name):
        return name in self._mechanisms

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self._mechanisms)

    def __repr__(self):
        parts = [f"nodes={list(self.nodes)}"]
        if self.inputs:
            parts.append(f"inputs={list(self.inputs)}")
        if self._interventions:
            parts.append(f"do={sorted(self._interventions)}")
        for kind in ("shift", "stochastic", "replace"):
            names = sorted(node for node, found in self.soft_interventions.items() if found.kind == kind)
            if names:
                parts.append(f"{kind}={names}")
        if self._observed:
            parts.append(f"observed={sorted(self._observed)}")
        return f"SCM({', '.join(parts)})"

    # -- surgery -------------------------------------------------------------------

    @property
    def params(self):
        """This SCM's own :class:`ParamStore` (shared with the SCMs ``do``/``condition`` make from it).

        >>> import causalppl as cp
        >>> scm = cp.SCM.from_graph([("x", "y")])
        >>> _ = scm.sample(3)
        >>> sorted(scm.params.keys()), "y.weight" in cp.get_param_store()
        (['x.bias', 'x.scale', 'y.bias', 'y.scale', 'y.weight'], False)
        """
        return self._state.params

    def copy(self):
        """An independent copy: same graph and mechanisms, its own copy of the params.

        Fitting the copy leaves this SCM as it is.
        """
        new = self._copy()
        new._state = self._state.copy()
        return new

    def _copy(self):
        new = copy.copy(self)
        new._mechanisms = dict(self._mechanisms)
        new._latent = set(self._latent)
        new._observed = dict(self._observed)
        new._interventions = dict(self._interventions)
        new._soft = dict(self._soft)
        new._replaced = dict(self._replaced)
        new._labels = dict(self._labels)
        new._meta = dict(self._meta)
        new._cache = {}
        return new

    def to(self, device):
        """A new SCM with observed and intervened values moved by ``Tensor.to(device)``."""
        new = self._copy()
        new._observed = {name: value.to(device) for name, value in self._observed.items()}
        new._interventions = {name: value.to(device) for name, value in self._interventions.items()}
        return new

    def do(self, **values):
        """A new SCM with each named node intervened on; see :mod:`causalppl.graph.intervention`.

        * a value (a finite number, tensor, list of numbers, or a labelled
          node's label) fixes the node and cuts its incoming edges; anything
          else that is not one of the forms below (``None``, NaN, infinity, a
          string for a node without labels) is a ``ValueError`` naming the node;
        * a callable of the node's natural value (``lambda x: x + 1``) or an
          expression of it (``"x + 1"``) is a shift: the node keeps its
          parents and its noise;
        * a distribution (``cp.dist.Bernoulli(0.3)``, ``"Bernoulli(0.3)"``) is a
          stochastic intervention: the node is drawn from it, cut from its parents.

        A new intervention on a node replaces its earlier one.

        >>> import causalppl as cp
        >>> scm = cp.SCM().add("z", "Normal(0, 1)").add("x", "Normal(z, 1)")
        >>> scm.do(x=1.0).parents("x"), scm.do(x=lambda x: x + 1).parents("x"), scm.do(x="Bernoulli(0.3)").parents("x")
        ((), ('z',), ())
        """
        from causalppl.graph.intervention import _Constant, parse_intervention

        self._require(*values)
        for name in values:
            if name in self._observed:
                raise ValueError(f"node '{name}' is observed; it cannot also be intervened on")
        new = self._copy()
        for name, value in values.items():
            found = parse_intervention(self, name, value)
            if isinstance(found, _Constant):
                found, value = None, found.value
            new._soft.pop(name, None)
            new._interventions.pop(name, None)
            if found is None:
                new._interventions[name] = check_value(name, value, self.labels(name), what="do")
                check_in_support(name, new._interventions[name], self._mechanisms[name], "do")
            elif found.kind == "replace":
                new._replaced[name] = found
            else:
                new._soft[name] = found
        new._check_surgery(values)
        return new

    def replace(self, **mechanisms):
        """A new SCM with each named node's mechanism replaced (any form :meth:`add` takes).

        The node's parents become the new mechanism's, which must be nodes of
        the SCM (or its inputs) and keep the graph acyclic; otherwise a
        ``ValueError`` names the node. In counterfactuals the node keeps its
        noise (see :func:`causalppl.noise.transfer`).

        >>> import causalppl as cp
        >>> scm = cp.graphs.load("confounded").replace(x="Normal(0.5 * z, 0.5)")
        >>> scm.parents("x"), scm.mechanism("x").text
        (('z',), 'Normal(0.5 * z, 0.5)')
        """
        from causalppl.graph.intervention import replacement

        self._require(*mechanisms)
        new = self._copy()
        for name, mechanism in mechanisms.items():
            if name in self._interventions:
                raise ValueError(f"replace: node '{name}' is set by do(); replace its mechanism before intervening")
            new._replaced[name] = replacement(self, name, mechanism)
        new._check_surgery(mechanisms, "replacement")
        return new

    def _check_surgery(self, names, what="intervention"):
        """Surgery that adds edges (a shift reading another node, a replacement) must keep the DAG acyclic."""
        graph = self._build_graph()
        if not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph)
            path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
            nodes = [name for name in names if any(name in edge for edge in cycle)] or list(names)
            raise CycleError(f"node '{nodes[0]}': the {what} creates the cycle {path}")
        self._cache["graph"] = nx.freeze(graph)

    def condition(self, **values):
        """A new SCM with each named node observed at its value (it then contributes its log density).

        Values are checked as for :meth:`do`; a value outside the support of
        the node's mechanism (``rain=2`` for a Bernoulli) is refused, naming
        the node and the support, when the model first runs.
        """
        self._require(*values)
        for name in values:
            if name in self._interventions or name in self._soft:
                raise ValueError(f"node '{name}' is intervened on; it cannot also be observed")
        new = self._copy()
        new._observed.update({name: check_value(name, value, self.labels(name), what="condition")
                              for name, value in values.items()})
        for name in values:
            check_in_support(name, new._observed.get(name), self._mechanisms[name], "condition")
        return new

    # -- lowering ------------------------------------------------------------------

    @property
    def model(self):
        """The lowered stochastic function ``model(n=None, data=None, subsample_size=None, **inputs)``."""
        if "model" not in self._cache:
            self.require_mechanisms()
            self._cache["model"] = LoweredModel(self)
        return self._cache["model"]

    def to_function(self):
        """Same as :attr:`model`."""
        return self.model

    def sample(self, n=None, distributed=False, **inputs):
        """Draw ``n`` joint samples: dict node -> tensor of shape ``(n, ...)``.

        Observational, or interventional after :meth:`do`. When nodes are
        observed (after :meth:`condition`) the draws come from the posterior,
        by importance resampling with the model as proposal. With
        ``distributed=True`` under ``torchrun`` each rank returns its share of
        the ``n`` draws (:func:`causalppl.causal.distributed.sample`).
        """
        if n is not None:
            n = check_count(n)
        if distributed:
            from causalppl.causal.distributed import sample

            return sample(self, n if n is not None else 1, **inputs)
        if self._observed:
            from causalppl.causal.queries import posterior_samples

            return Samples(posterior_samples(self, n if n is not None else 1, **inputs), self._all_labels())
        with torch.no_grad():
            if n is None:
                return self.model(**inputs)
            return Samples(self.model.simulate(n, **inputs)[0], self._all_labels())

    def _all_labels(self):
        return {node: self.labels(node) for node in self._mechanisms if self.labels(node) is not None}

    def log_prob(self, values, **inputs):
        """Joint log density of a full assignment ``values`` (node -> value)."""
        model = self.model
        unknown = [str(name) for name in values if name not in self._mechanisms]
        if unknown:
            raise KeyError(f"log_prob: {', '.join(map(repr, unknown))} are not nodes (nodes: {', '.join(self.nodes)})")
        return model.log_prob(node_columns(values, model.labels, self.nodes, scalars=True), inputs)

    # -- delegations to other layers ------------------------------------------------

    def to_dot(self, **options):
        """DOT text of the graph; expression mechanisms round-trip through :func:`read_dot`."""
        from causalppl.graph.dot import to_dot

        return to_dot(self, **options)

    def to_dagitty(self):
        """dagitty text of the graph (structure, latent nodes, roles)."""
        from causalppl.graph.formats.dagitty import to_dagitty

        return to_dagitty(self)

    def to_gml(self):
        """GML text of the graph, mechanisms as text."""
        from causalppl.graph.formats.gml import to_gml

        return to_gml(self)

    def to_bif(self):
        """BIF text of a discrete SCM (every node Bernoulli, categorical or a table)."""
        from causalppl.graph.formats.bif import to_bif

        return to_bif(self)

    def to_xmlbif(self):
        """XMLBIF text of a discrete SCM; see :func:`causalppl.graph.formats.xmlbif.to_xmlbif`."""
        from causalppl.graph.formats.xmlbif import to_xmlbif

        return to_xmlbif(self)

    def draw(self, path, format=None, **options):
        """Render the DAG to ``path`` (``.svg``, ``.png`` or ``.dot``) with Graphviz.

        ``options`` go to :func:`causalppl.graph.draw.draw` (``show="mechanisms"``, ``rankdir=``, ``legend=``).
        """
        from causalppl.graph.draw import draw

        return draw(self, path, format=format, **options)

    def _repr_svg_(self):
        from causalppl.graph.draw import render_svg

        try:
            return render_svg(self)
        except Exception:  # notebooks fall back to the text repr
            return None

    def save(self, path):
        """Write this SCM (graph, mechanisms, params, posterior draws) to one file, atomically.

        :func:`causalppl.load` reads it back; see :mod:`causalppl.graph.persist`.

        >>> import os, tempfile, causalppl as cp
        >>> path = os.path.join(tempfile.mkdtemp(), "model.cpm")
        >>> cp.graphs.load("confounded").condition(x=1.0).save(path)
        >>> cp.load(path).observed
        {'x': tensor(1.)}
        """
        from causalppl.graph.persist import save

        save(self, path)

    def fit(self, data=None, **options):
        """Fit the model's params and latent posteriors by SVI; see :func:`causalppl.causal.fit.fit`."""
        from causalppl.causal.fit import fit

        return fit(self, data=data, **options)

    def counterfactual(self, evidence, do, n=1000, **options):
        """Counterfactual samples: what would have happened under ``do`` given ``evidence``."""
        from causalppl.causal.counterfactual import counterfactual

        return counterfactual(self, evidence=evidence, do=do, n=n, **options)
