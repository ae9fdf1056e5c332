"""The compiled log joint of an SCM: known mechanism families evaluated batched across nodes.

The per-node lowered model (:mod:`causalppl.graph.lower`) is the reference
semantics: one ``sample`` site per node, each scored by its own distribution.
:func:`compile_model` turns the same SCM, bound to its data, into a straight
line of tensor operations that computes the same log joint density:

* every linear mechanism (``LinearGaussian``, ``Logistic``; point or Bayesian
  weights) is one column of a weight matrix ``W`` placed under the edge mask,
  so all their means (or logits) are one matmul ``features @ W + bias``, and
  all linear-Gaussian nodes share one log-density, as do all logistic ones;
* every categorical table is a slice of one vector of log-probabilities, read
  for all rows and nodes with one gather;
* MLPs, expression mechanisms (``"Normal(2*x + 1, 0.5)"``) and fixed root
  distributions are evaluated node by node, without the handler stack.

Latent nodes take the values a guide drew, so in the log joint no node waits
for another: every family is one batch over all its nodes, whatever the
topological order (drawing nodes one topological level after another is
what sampling needs, and queries sample on the reference path).

Data columns are read, checked and standardised once, here, not at every step.
Mechanisms outside these families (a Python callable, which may hold its own
``param`` or ``sample`` sites) raise :class:`NotCompilable` naming the node:
callers then run the reference model.

>>> import torch, causalppl as cp
>>> scm = cp.SCM.from_graph([("x", "y")], bayesian=True)
>>> data = {"x": torch.randn(50), "y": torch.randn(50)}
>>> compiled = compile_model(scm.model, data)
>>> [site for site, _ in compiled.global_sites]
['y.weight', 'x.bias', 'y.bias']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from causalppl.graph.expr import Expression
from causalppl.graph.mechanism import FixedDistribution

HALF_LOG_2PI = math.log(math.sqrt(2 * math.pi))  # as torch's Normal.log_prob writes it


class NotCompilable(ValueError):
    """The SCM (or its data) is outside what :func:`compile_model` batches; the message says which node and why."""


@dataclass
class _Linear:
    """One linear mechanism: its node, features (column keys), family and where its coefficients live."""

    node: str
    kind: str  # "gaussian" | "bernoulli"
    features: list
    bayesian: bool
    prior_scale: float
    standardization: tuple  # the node's own (centre, scale); (0, 1) for logistic nodes
    latent: bool = False


@dataclass
class _Table:
    node: str
    parents: tuple
    cardinalities: tuple
    num_categories: int
    bayesian: bool
    concentration: float


@dataclass
class _MLP:
    node: str
    features: list
    standardization: tuple
    latent: bool = False


@dataclass
class _Generic:
    node: str
    mechanism: object
    parents: tuple
    latent: bool = False


@dataclass
class Blocks:
    """The coefficients the compiled log joint reads, each a flat tensor in the compiled order.

    ``w_bayes`` / ``b_bayes``: the Bayesian linear weights and biases (latent
    sites) of :attr:`CompiledSCM.bayes_nodes`; ``w_point`` / ``b_point``: the
    point-estimate ones of :attr:`CompiledSCM.point_nodes`; ``scale``: the
    noise scales of the linear-Gaussian nodes in output order; ``tables``: each
    table's probabilities; ``mlps``: each MLP's ``(w1, b1, w2, b2, scale)``.
    """

    w_bayes: torch.Tensor | None = None
    b_bayes: torch.Tensor | None = None
    w_point: torch.Tensor | None = None
    b_point: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    tables: list = field(default_factory=list)
    mlps: list = field(default_factory=list)


def compile_model(lowered, data=None, subsample_size=None, inputs=None, hidden=()):
    """The :class:`CompiledSCM` of ``lowered`` (an SCM's model) bound to ``data``; see the module docstring.

    Parameters
    ----------
    lowered : LoweredModel
        ``scm.model``.
    data : dict node -> tensor, optional
        Checked data columns (``scm.model.check_data``), one row per plate entry.
    subsample_size : int, optional
        Rows per step; the log joint of a subsample is scaled by rows / subsample.
    inputs : dict, optional
        Values of the SCM's inputs.
    hidden : iterable of node names
        Latent nodes left out of the log joint (a fit hides the ones nothing observed depends on).

    Raises
    ------
    NotCompilable naming the node (or column) and what keeps it from being compiled.
    """
    return CompiledSCM(lowered, dict(data or {}), subsample_size, dict(inputs or {}), frozenset(hidden))


class CompiledSCM:
    """An SCM's log joint (and ancestral sampler) as batched tensor operations; see :func:`compile_model`.

    ``global_sites``: the latent sites drawn once per run (Bayesian weights,
    biases and tables), ``[(site, shape), ...]`` in the order of the flat
    vector :meth:`evaluate` reads; ``row_latents``: the latent nodes, one
    value per row; ``param_blocks``: ``[(block, [param names])]`` of the
    mechanisms' params, in the order of :class:`Blocks`.
    """

    def __init__(self, lowered, data, subsample_size, inputs, hidden):
        from causalppl.causal import learnable  # the graph layer reads causal/'s families lazily

        self._families = learnable
        self.store = lowered.state.params
        self.order = tuple(node for node in lowered.order if node not in hidden)
        self.hidden = hidden
        observed = {**{k: torch.as_tensor(v) for k, v in lowered.observed.items()}, **data}
        self.rows = len(next(iter(data.values()))) if data else None
        self.plate = self.rows is not None
        self.n = self.rows if self.plate else 1
        if subsample_size is not None and not self.plate:
            raise NotCompilable("subsample_size needs data")
        self.subsample_size = subsample_size if self.plate and subsample_size is not None and \
            subsample_size < self.rows else None
        self.known = {}  # name -> (n,) tensor: data, observed, intervened values, inputs
        self.dtype = torch.get_default_dtype()
        self.device = None
        for name, value in {**inputs, **lowered.interventions, **observed}.items():
            if name in hidden:
                continue
            self.known[name] = self._as_rows(name, value)
        self.row_latents = [node for node in self.order if node not in self.known]
        self.linear, self.tables, self.mlps, self.generic = [], [], [], []
        for node in self.order:
            if node in lowered.interventions:
                continue
            mechanism = lowered.mechanisms[node]
            for parent in mechanism.parents:
                if parent in hidden:
                    raise NotCompilable(f"node '{node}': its parent '{parent}' is hidden from the log joint")
                if parent not in self.known and parent not in self.row_latents:
                    raise NotCompilable(f"node '{node}': parent '{parent}' has no value")
            self._classify(node, mechanism, node in self.row_latents)
        self._lay_out()

    # -- reading the SCM ------------------------------------------------------------

    def _as_rows(self, name, value):
        """A known value as one entry per row (``(n,)``), or raise for a shape the compiler does not batch."""
        value = torch.as_tensor(value)
        if value.is_floating_point() and value.dtype != self.dtype:
            raise NotCompilable(f"'{name}': values of dtype {value.dtype}, but the params use {self.dtype}")
        if not value.is_floating_point():
            value = value.to(self.dtype)
        if self.device is None:
            self.device = value.device
        elif value.device != self.device:
            raise NotCompilable(f"'{name}': values on {value.device}, others on {self.device}")
        if value.dim() == 0:
            return value.reshape(1).expand(self.n)
        if value.dim() == 1 and self.plate and len(value) == self.rows:
            return value
        raise NotCompilable(f"'{name}': a value of shape {tuple(value.shape)} (the compiler takes one value "
                            f"{'per row' if self.plate else 'per node'})")

    def _classify(self, node, mechanism, latent):
        fn = mechanism.fn
        kinds = self._families
        if type(fn) in (kinds.LinearGaussian, kinds.Logistic):
            gaussian = type(fn) is kinds.LinearGaussian
            if latent and not gaussian:
                raise NotCompilable(f"node '{node}': a latent Logistic node is discrete")
            own = fn._centre_scale(node) if gaussian else (0.0, 1.0)
            self.linear.append(_Linear(node, "gaussian" if gaussian else "bernoulli", self._features(fn),
                                       fn.bayesian, fn.prior_scale, own, latent))
        elif type(fn) is kinds.CategoricalTable:
            if latent:
                raise NotCompilable(f"node '{node}': a latent CategoricalTable node is discrete")
            for parent in fn.parents:
                if parent not in self.known:
                    raise NotCompilable(f"node '{node}': table parent '{parent}' is latent")
            self.tables.append(_Table(node, fn.parents, fn.parent_cardinalities, fn.num_categories,
                                      fn.bayesian, fn.concentration))
        elif type(fn) is kinds.MLPGaussian:
            self.mlps.append(_MLP(node, self._features(fn), fn._centre_scale(node), latent))
        elif isinstance(fn, (Expression, FixedDistribution)):
            self.generic.append(_Generic(node, mechanism, mechanism.parents, latent))
        else:
            raise NotCompilable(f"node '{node}': its mechanism {mechanism!r} is not one of the compiled families "
                                "(linear-Gaussian, logistic, categorical table, MLP, expression, fixed distribution)")

    def _features(self, fn):
        """The feature keys of a learnable mechanism, in the order of its weights (see ``_Learnable._features``)."""
        keys = []
        for parent in fn.parents:
            if parent in fn.parent_levels:
                if parent not in self.known:
                    raise NotCompilable(f"node '{fn.node}': categorical parent '{parent}' is latent")
                keys += [("level", parent, k) for k in range(1, len(fn.parent_levels[parent]))]
            else:
                keys.append(("std", parent) + tuple(fn._centre_scale(parent)))
        return keys

    # -- the layout ---------------------------------------------------------------------

    def _lay_out(self):
        """Orders and index tensors: outputs, feature columns, the weight matrix's entries, the tables' gather."""
        gauss_obs = [m for m in self.linear if m.kind == "gaussian" and not m.latent]
        gauss_lat = [m for m in self.linear if m.kind == "gaussian" and m.latent]
        bern = [m for m in self.linear if m.kind == "bernoulli"]
        self.outputs = gauss_obs + gauss_lat + bern
        self.n_gauss_obs, self.n_gauss_lat, self.n_bern = len(gauss_obs), len(gauss_lat), len(bern)
        # Constant feature columns (known values): the observed Gaussian targets first, so that
        # the targets are the first columns of the one constant matrix.
        self._const_keys = {}
        for m in gauss_obs:
            self._const_key(("std", m.node) + m.standardization)
        for m in bern:
            self._const_key(("std", m.node, 0.0, 1.0))
        var_keys = {}
        for m in self.linear + self.mlps:
            for key in m.features:
                if key[1] in self.known:
                    self._const_key(key)
                else:
                    var_keys.setdefault(key, len(var_keys))
        for m in self.mlps:
            if not m.latent:
                self._const_key(("std", m.node) + m.standardization)
        self._var_keys = var_keys
        # Latent features as raw latent values need no work: the latent matrix is the feature matrix.
        self._var_is_latents = bool(var_keys) and all(key[0] == "std" and key[2:] == (0.0, 1.0)
                                                      for key in var_keys)
        if self._var_is_latents:
            self._var_keys = {("std", node, 0.0, 1.0): i for i, node in enumerate(self.row_latents)}
        columns = [self._column(key) for key in self._const_keys]
        self.constant = torch.stack(columns, dim=1).contiguous() if columns else None
        self.n_const = len(columns)
        self.n_var = len(self._var_keys)
        # Coefficients: Bayesian nodes first (their sites lead the flat vector of global latents), then point ones.
        self.bayes_nodes = [m.node for m in self.outputs if m.bayesian]
        self.n_bayes_weights = sum(len(m.features) for m in self.outputs if m.bayesian)
        self.point_nodes = [m.node for m in self.outputs if not m.bayesian]
        by_node = {m.node: (j, m) for j, m in enumerate(self.outputs)}
        rows, cols, bias_order = [], [], []
        for node in self.bayes_nodes + self.point_nodes:
            j, m = by_node[node]
            for key in m.features:
                rows.append(self._row_of(key))
                cols.append(j)
            bias_order.append(j)
        device = self.device
        self._w_index = (torch.tensor(rows, dtype=torch.long, device=device),
                         torch.tensor(cols, dtype=torch.long, device=device))
        # b_all is [Bayesian biases | point biases]; the outputs want them in output order.
        inverse = [0] * len(bias_order)
        for position, j in enumerate(bias_order):
            inverse[j] = position
        self._bias_perm = None if inverse == list(range(len(inverse))) else \
            torch.tensor(inverse, dtype=torch.long, device=device)
        self._n_features = self.n_const + self.n_var
        spreads = [m.standardization[1] for m in gauss_obs + gauss_lat]
        self._log_spread = (sum(math.log(s) for s in spreads[:len(gauss_obs)]),
                            sum(math.log(s) for s in spreads[len(gauss_obs):]))
        self._lat_targets = [self._var_target(m) for m in gauss_lat]
        self._bern_cols = torch.tensor([self._const_keys[("std", m.node, 0.0, 1.0)] for m in bern],
                                       dtype=torch.long, device=device)
        self._bern_contiguous = [self._const_keys[("std", m.node, 0.0, 1.0)] for m in bern] == \
            list(range(len(gauss_obs), len(gauss_obs) + len(bern)))
        self._prior_scales = self._bayes_prior_scales()
        self._lay_out_tables()
        self._lay_out_mlps()
        self.global_sites = (
            [(f"{m.node}.weight", (len(m.features),)) for m in self._bayes if m.features]
            + [(f"{m.node}.bias", ()) for m in self._bayes]
            + [(f"{t.node}.probs", t.cardinalities + (t.num_categories,)) for t in self.tables if t.bayesian])
        gauss = gauss_obs + gauss_lat
        self.param_blocks = [
            ("w_point", [f"{node}.weight" for node in self.point_nodes if by_node[node][1].features]),
            ("b_point", [f"{node}.bias" for node in self.point_nodes]),
            ("scale", [f"{m.node}.scale" for m in gauss]),
        ] + [(f"table.{t.node}", [f"{t.node}.probs"]) for t in self.tables if not t.bayesian] + [
            (f"mlp.{m.node}", [f"{m.node}.net.0.weight", f"{m.node}.net.0.bias", f"{m.node}.net.2.weight",
                               f"{m.node}.net.2.bias", f"{m.node}.scale"]) for m in self.mlps]
        self.param_blocks = [(key, names) for key, names in self.param_blocks if names]

    @property
    def _bayes(self):
        by_node = {m.node: m for m in self.outputs}
        return [by_node[node] for node in self.bayes_nodes]

    def _const_key(self, key):
        return self._const_keys.setdefault(key, len(self._const_keys))

    def _row_of(self, key):
        """The row of the weight matrix (= feature column) for a feature key."""
        if key in self._const_keys:
            return self._const_keys[key]
        return self.n_const + self._var_keys[key]

    def _column(self, key):
        """A constant feature column, computed as the learnable mechanism computes the feature."""
        value = self.known[key[1]]
        if key[0] == "level":
            codes = value.long() if value.is_floating_point() else value
            return (codes == key[2]).to(self.dtype)
        centre, scale = key[2], key[3]
        return (value - centre) / scale if (centre, scale) != (0.0, 1.0) else value

    def _var_target(self, m):
        """How a latent Gaussian node's standardised value is read from the latent matrix."""
        return self.row_latents.index(m.node), m.standardization

    def _bayes_prior_scales(self):
        bayes = self._bayes
        if not bayes:
            return None
        scales = {m.prior_scale for m in bayes}
        if len(scales) == 1:
            return scales.pop()
        weights = [m.prior_scale for m in bayes for _ in m.features]
        biases = [m.prior_scale for m in bayes]
        return (torch.tensor(weights, dtype=self.dtype, device=self.device),
                torch.tensor(biases, dtype=self.dtype, device=self.device))

    def _lay_out_tables(self):
        """One gather index per row and table into the concatenated log-probability tables."""
        offsets, offset, columns = [], 0, []
        for t in self.tables:
            flat = torch.zeros(self.n, dtype=torch.long, device=self.device)
            stride = 1
            for parent, card in reversed(list(zip(t.parents, t.cardinalities, strict=True))):
                index = self.known[parent].long()
                if index.numel() and (index.min() < 0 or index.max() >= card):
                    raise NotCompilable(f"node '{t.node}': parent '{parent}' outside 0..{card - 1}")
                flat = flat + index * stride
                stride *= card
            value = self.known[t.node]
            if bool((value != value.round()).any()) or value.min() < 0 or value.max() >= t.num_categories:
                raise NotCompilable(f"node '{t.node}': values outside its categories 0..{t.num_categories - 1}")
            columns.append(offset + flat * t.num_categories + value.long())
            offsets.append(offset)
            offset += stride * t.num_categories
        self._table_index = torch.stack(columns, dim=1) if columns else None

    def _lay_out_mlps(self):
        self._mlp_inputs = []
        for m in self.mlps:
            rows = [self._row_of(key) for key in m.features]
            const = all(r < self.n_const for r in rows)
            self._mlp_inputs.append((torch.tensor(rows, dtype=torch.long, device=self.device), const))

    # -- evaluating -------------------------------------------------------------------

    def blocks_from(self, values, params=None):
        """:class:`Blocks` from a dict of latent site values and params (default: the SCM's store)."""
        store = self.store if params is None else params

        def get(name):
            return store[name]

        bayes = self._bayes
        blocks = Blocks()
        weights = [values[f"{m.node}.weight"].reshape(-1) for m in bayes if m.features]
        blocks.w_bayes = torch.cat(weights) if weights else None
        blocks.b_bayes = torch.stack([values[f"{m.node}.bias"].reshape(()) for m in bayes]) if bayes else None
        for key, names in self.param_blocks:
            if key in ("w_point", "b_point", "scale"):
                setattr(blocks, key, torch.cat([get(name).reshape(-1) for name in names]))
        for t in self.tables:
            blocks.tables.append(values[f"{t.node}.probs"] if t.bayesian else get(f"{t.node}.probs"))
        for m in self.mlps:
            blocks.mlps.append(tuple(get(f"{m.node}.{suffix}") for suffix in
                                     ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "scale")))
        return blocks

    def latents_from(self, values):
        """The ``(rows in use, latent nodes)`` matrix of per-row latent values from a dict node -> value."""
        if not self.row_latents:
            return None
        return torch.stack([values[node].reshape(-1) for node in self.row_latents], dim=1)

    def log_joint(self, values, rows=None, params=None):
        """The log joint density the reference model scores at ``values``, as one scalar tensor.

        ``values`` maps each latent site (``global_sites`` and ``row_latents``,
        per-row ones for the rows in use) to its value; ``rows`` are the row
        indices in use (default: all); ``params`` maps param names to
        constrained values (default: the SCM's store, so gradients reach its leaves).

        >>> import torch, causalppl as cp
        >>> scm = cp.SCM.from_graph([("x", "y")])
        >>> data = {"x": torch.tensor([0.0, 1.0]), "y": torch.tensor([1.0, 2.0])}
        >>> _ = scm.log_prob(data)  # creates the params
        >>> ours, theirs = compile_model(scm.model, data).log_joint({}), scm.log_prob(data).sum()
        >>> bool(torch.isclose(ours, theirs))
        True
        """
        return self.evaluate(self.blocks_from(values, params), self.latents_from(values), rows)

    def evaluate(self, blocks, latents, rows=None):
        """The log joint from :class:`Blocks`, the latent matrix ``(rows in use, len(row_latents))`` and rows."""
        const = self.constant
        if const is not None and rows is not None:
            const = const.index_select(0, rows)
        count = self.n if rows is None else len(rows)
        var = self._var_columns(latents)
        in_rows = 0.0   # terms inside the rows plate (scaled by rows / subsample)
        outside = 0.0   # global latent sites' priors
        if self.outputs:
            linear = self._linear_outputs(blocks, const, var)
            in_rows = in_rows + self._gaussian_and_bernoulli(blocks, linear, const, latents, count)
        if blocks.w_bayes is not None or blocks.b_bayes is not None:
            outside = outside + self._bayes_prior(blocks)
        if self.tables:
            in_rows = in_rows + self._tables(blocks, rows)
            outside = outside + self._table_priors(blocks)
        for m, params, (columns, is_const) in zip(self.mlps, blocks.mlps, self._mlp_inputs, strict=True):
            in_rows = in_rows + self._mlp(m, params, columns, is_const, const, var, latents)
        for g in self.generic:
            in_rows = in_rows + self._generic(g, latents, rows, count)
        if self.subsample_size is not None and rows is not None:
            in_rows = in_rows * (self.rows / count)
        return torch.as_tensor(outside + in_rows)

    def _var_columns(self, latents):
        if not self.n_var:
            return None
        if self._var_is_latents:
            return latents
        columns = [None] * self.n_var
        for key, i in self._var_keys.items():
            value = latents[:, self.row_latents.index(key[1])]
            centre, scale = key[2], key[3]
            columns[i] = (value - centre) / scale if (centre, scale) != (0.0, 1.0) else value
        return torch.stack(columns, dim=1)

    def _linear_outputs(self, blocks, const, var):
        """``features @ W + bias`` for every linear node at once (rows in use, outputs)."""
        parts = [part for part in (blocks.w_bayes, blocks.w_point) if part is not None]
        weights = parts[0] if len(parts) == 1 else torch.cat(parts) if parts else None
        parts = [part for part in (blocks.b_bayes, blocks.b_point) if part is not None]
        bias = parts[0] if len(parts) == 1 else torch.cat(parts)
        if self._bias_perm is not None:
            bias = bias.index_select(0, self._bias_perm)
        if weights is None:
            rows = const.shape[0] if const is not None else var.shape[0] if var is not None else self.n
            return bias.expand(rows, len(self.outputs))
        matrix = torch.zeros(self._n_features, len(self.outputs), dtype=weights.dtype, device=weights.device)
        matrix = matrix.index_put(self._w_index, weights)
        out = None
        if self.n_const:
            out = torch.addmm(bias, const, matrix[:self.n_const])
        if self.n_var:
            part = var @ matrix[self.n_const:]
            out = part + bias if out is None else out + part
        return out

    def _gaussian_and_bernoulli(self, blocks, linear, const, latents, count):
        total = 0.0
        a, b = self.n_gauss_obs, self.n_gauss_lat
        if a:
            total = total + _gaussian(const[:, :a], linear[:, :a], blocks.scale[:a], count, self._log_spread[0])
        if b:
            targets = torch.stack([_standardised(latents[:, i], s) for i, s in self._lat_targets], dim=1)
            total = total + _gaussian(targets, linear[:, a:a + b], blocks.scale[a:a + b], count,
                                      self._log_spread[1])
        if self.n_bern:
            observed = const[:, a:a + self.n_bern] if self._bern_contiguous else \
                const.index_select(1, self._bern_cols)
            total = total - F.binary_cross_entropy_with_logits(linear[:, a + b:], observed, reduction="sum")
        return total

    def _bayes_prior(self, blocks):
        """Normal(0, prior_scale) log densities of the Bayesian weights and biases (sites outside the rows)."""
        total = 0.0
        scales = self._prior_scales
        for i, value in enumerate((blocks.w_bayes, blocks.b_bayes)):
            if value is None:
                continue
            scale = scales if isinstance(scales, float) else scales[i]
            log_scale = math.log(scale) * value.numel() if isinstance(scale, float) else torch.log(scale).sum()
            z = value / scale
            total = total - 0.5 * (z * z).sum() - log_scale - value.numel() * HALF_LOG_2PI
        return total

    def _tables(self, blocks, rows):
        """All tables' log-probabilities of all rows: one gather into the concatenated log tables."""
        logs = []
        for t, probs in zip(self.tables, blocks.tables, strict=True):
            flat = probs.reshape(-1, t.num_categories)
            flat = flat / flat.sum(-1, keepdim=True)  # as Categorical(probs=...) normalises
            eps = torch.finfo(flat.dtype).eps
            logs.append(flat.clamp(min=eps, max=1 - eps).log().reshape(-1))
        logs = logs[0] if len(logs) == 1 else torch.cat(logs)
        index = self._table_index if rows is None else self._table_index.index_select(0, rows)
        return logs.take(index).sum()

    def _table_priors(self, blocks):
        total = 0.0
        for t, probs in zip(self.tables, blocks.tables, strict=True):
            if t.bayesian:
                alpha = torch.full(probs.shape, t.concentration, dtype=probs.dtype, device=probs.device)
                total = total + torch.distributions.Dirichlet(alpha, validate_args=False).log_prob(probs).sum()
        return total

    def _mlp(self, m, params, columns, is_const, const, var, latents):
        w1, b1, w2, b2, scale = params
        if is_const:
            inputs = const.index_select(1, columns)
        else:
            full = torch.cat([part for part in (const, var) if part is not None], dim=1)
            inputs = full.index_select(1, columns)
        loc = (torch.tanh(inputs @ w1.T + b1) @ w2.T + b2).squeeze(-1)
        if m.latent:
            target = _standardised(latents[:, self.row_latents.index(m.node)], m.standardization)
        else:
            target = const[:, self._const_keys[("std", m.node) + m.standardization]]
        return _gaussian(target[:, None], loc[:, None], scale.reshape(1), loc.shape[0],
                         math.log(m.standardization[1]))

    def _value(self, name, latents, rows):
        if name in self.known:
            value = self.known[name]
            value = value if rows is None else value.index_select(0, rows)
        else:
            value = latents[:, self.row_latents.index(name)]
        return value if self.plate else value.reshape(())

    def _generic(self, g, latents, rows, count):
        """An expression or fixed mechanism: its own distribution, scored as the plate would score it."""
        parents = {name: self._value(name, latents, rows) for name in g.parents}
        fn = g.mechanism(**parents)
        log_prob = fn.log_prob(self._value(g.node, latents, rows))
        if self.plate and log_prob.shape != (count,):
            log_prob = log_prob.expand(torch.broadcast_shapes(log_prob.shape, (count,)))
        return log_prob.sum()


def _standardised(value, standardization):
    centre, scale = standardization
    return (value - centre) / scale if (centre, scale) != (0.0, 1.0) else value


def _gaussian(targets, means, scale, count, log_spread):
    """Sum of ``Normal(centre + spread * means, spread * scale).log_prob(x)`` over rows and nodes,
    in standardised units: ``targets`` are ``(x - centre) / spread``; ``log_spread`` is the sum of the log spreads."""
    residual = targets - means
    squares = (residual * residual).sum(0)
    return (-0.5 * (squares / (scale * scale)).sum() - count * torch.log(scale).sum()
            - count * (log_spread + targets.shape[1] * HALF_LOG_2PI))
