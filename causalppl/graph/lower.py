"""Lowering: an SCM becomes an ordinary stochastic function.

The lowered model calls :func:`causalppl.sample` once per node, in
topological order, with the node's name as the site name, and returns a dict
of node values. Intervened nodes become ``intervention`` sites (recorded,
never scored); observed nodes are sampled with ``obs=``. With ``n=`` or
``data=`` everything runs inside a plate of that many rows.

>>> import causalppl as cp
>>> scm = cp.SCM().add("z", "Normal(0, 1)").add("x", "Normal(z, 1)")
>>> values = scm.model(n=5)
>>> sorted(values), tuple(values["x"].shape)
(['x', 'z'], (5,))
"""

from __future__ import annotations

import contextlib

import torch

from causalppl.graph.columns import read_columns
from causalppl.graph.values import check_column, check_count, check_input, check_shape, check_support
from causalppl.handlers import param_scope, substitute, trace
from causalppl.runtime import as_tensor, intervention, plate, sample
from causalppl.trace import contributes_log_prob, log_prob_of

RESERVED = frozenset({"n", "data", "subsample_size"})
ROWS = "_rows"  # the plate over data rows (node names never start with "_")


class MechanismError(ValueError):
    """A node's mechanism raised, or returned something that is not a Distribution."""


class LoweredModel:
    """The stochastic function of an SCM: ``model(n=None, data=None, subsample_size=None, **inputs)``."""

    def __init__(self, scm):
        self.order = scm.nodes
        self.mechanisms = {node: scm.mechanism(node) for node in self.order}
        self.state = scm._state
        self.observed = scm.observed
        self.interventions = scm.interventions
        self.inputs = scm.inputs
        # Node -> state labels (SCM.labels); data columns are encoded by these.
        self.labels = {node: scm.labels(node) for node in self.order if scm.labels(node) is not None}
        # Inputs only intervened nodes used: do() cut them, so a value given for
        # them (as for the unintervened model) is accepted and ignored.
        # So are those only a node's mechanism before a stochastic intervention or a replacement used.
        used = [parent for node in self.order for mechanism in (scm._mechanisms[node], scm.natural_mechanism(node))
                for parent in mechanism.parents]
        self.cut_inputs = tuple(dict.fromkeys(
            parent for parent in used if parent not in self.mechanisms and parent not in self.inputs))
        # Node -> the observed tensor last checked against its mechanism's support (see _check_observed).
        self._checked = {}
        self._data_checked = None  # the data last checked (see _check_data_once)
        self.__name__ = "scm_model"

    @property
    def global_sites(self):
        """Sample sites drawn once per run for all rows (Bayesian weights), by node."""
        return {node: m.global_sites for node, m in self.mechanisms.items()
                if m.global_sites and node not in self.interventions}

    def __call__(self, n=None, data=None, subsample_size=None, **inputs):
        with param_scope(store=self.state.params):
            return self._call(n, data, subsample_size, inputs)

    def _call(self, n, data, subsample_size, inputs):
        inputs = self._check_inputs(inputs)
        self._prepare()
        observed = self.observed
        if data is not None:
            data = self._check_data_once(data)
            observed = {**observed, **data}
            rows = len(next(iter(data.values()))) if data else None
            if n is not None and rows is not None and n != rows:
                raise ValueError(f"n={n} disagrees with the {rows} rows of data")
            n = rows if n is None else n
        if n is None:
            if subsample_size is not None:
                raise ValueError("subsample_size needs data or n")
            return self.run(inputs, observed)
        with plate(ROWS, n, subsample_size=subsample_size) as rows:
            if subsample_size is not None and subsample_size < n:
                observed = {k: _rows_of(v, n, rows) for k, v in self.observed.items()}
                observed.update({k: v.index_select(0, rows) for k, v in (data or {}).items()})
                inputs = {k: _rows_of(v, n, rows) for k, v in inputs.items()}
            return self.run(inputs, observed)

    def run(self, inputs, observed):
        """Sample every node given input values and observed values (no plate)."""
        values = dict(inputs)
        for node in self.order:
            if node in self.interventions:
                value = self.interventions[node]
                with _naming(node, "do", value):
                    values[node] = intervention(node, value)
                continue
            mechanism = self.mechanisms[node]
            try:
                fn = mechanism(**{parent: values[parent] for parent in mechanism.parents})
            except MechanismError:
                raise
            except Exception as err:
                raise MechanismError(f"node '{node}': its mechanism {mechanism!r} failed: {err}") from err
            if not isinstance(fn, torch.distributions.Distribution):
                raise MechanismError(
                    f"node '{node}': its mechanism must return a torch Distribution, "
                    f"got {type(fn).__name__} {fn!r}"
                )
            value = observed.get(node)
            if value is None:
                values[node] = sample(node, fn)
                continue
            self._check_observed(node, value, fn)
            values[node] = sample(node, fn, obs=value)
        return {node: values[node] for node in self.order}

    def _check_observed(self, node, value, fn):
        """An observed value must lie in the support of the distribution its mechanism returned.

        Checked once per observed tensor: the fixed values of ``condition``
        once, data once per fit (a new tensor each step under subsampling, on
        the CPU; on a GPU only the first, since each check waits for the device).
        """
        check_shape(node, value, fn)
        checked = self._checked.get(node)
        if checked is value or (checked is not None and value.device.type != "cpu"):
            return
        check_support(node, value, fn)
        self._checked[node] = value

    def _prepare(self):
        for node, mechanism in self.mechanisms.items():
            # Mechanisms with global latent sites (Bayesian weights) draw them
            # here, once per run, outside the plate over rows.
            if mechanism.prepare is not None and node not in self.interventions:
                mechanism.prepare()

    def simulate(self, n, **inputs):
        """``n`` rows for queries: dict node -> tensor, plus each row's global weights.

        Unlike a run of the model, every row gets its own draw of the Bayesian
        weights (the ``global_sites``): row ``i`` takes draw ``i % S`` of the
        fitted posterior's ``S`` draws, or a fresh prior draw before any fit.
        So a Monte Carlo average over rows integrates over the weights, and
        likelihood weighting can weigh each row by its own weights. Returns
        ``(values, weights)``; ``weights`` maps site -> per-row values.
        """
        n = check_count(n)
        inputs = self._check_inputs(inputs)
        sites = [site for names in self.global_sites.values() for site in names]
        with param_scope(store=self.state.params), plate(ROWS, n), trace() as tr:
            posterior = self.state.posterior
            if sites and posterior is not None:
                draws = {site: _cycle_rows(posterior[site], n) for site in sites if site in posterior}
                with substitute(data=draws):
                    self._prepare()
            else:
                self._prepare()
            values = self.run(inputs, self.observed)
        weights = {site: tr.trace.nodes[site]["value"] for site in sites}
        return values, weights

    def prepare_with(self, weights):
        """Set the Bayesian mechanisms' weights to given per-row values (for counterfactuals)."""
        if weights:
            with param_scope(store=self.state.params), substitute(data=weights):
                self._prepare()

    def _check_inputs(self, inputs):
        missing = [name for name in self.inputs if name not in inputs]
        unknown = [name for name in inputs if name not in self.inputs and name not in self.cut_inputs]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
            if unknown:
                parts.append(f"unknown keyword(s) {', '.join(map(repr, unknown))}")
            expected = ", ".join(self.inputs) or "none"
            raise TypeError(f"SCM model: {'; '.join(parts)} (the model's inputs are: {expected})")
        return {name: check_input(name, value) for name, value in inputs.items() if name not in self.cut_inputs}

    def _check_data_once(self, data):
        """:meth:`check_data`, run once for a dict of the same tensors (a fit passes them at every step)."""
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            return self.check_data(data)
        key = tuple((name, id(value)) for name, value in data.items())
        if self._data_checked is not None and self._data_checked[0] == key:
            return self._data_checked[2]
        checked = self.check_data(data)
        self._data_checked = (key, list(data.values()), checked)  # the values kept alive: ids stay theirs
        return checked

    def check_data(self, data):
        """Data for this model -> dict node -> tensor; every error names the column (see :func:`node_columns`)."""
        data = node_columns(data, self.labels, self.order)
        for name in data:
            if name in self.interventions:
                raise ValueError(f"data column '{name}' is an intervened node; it cannot also be observed")
        lengths = {name: len(value) for name, value in data.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"data columns have different numbers of rows: {lengths}")
        return data

    def log_prob(self, values, inputs):
        """Joint log density of a full assignment (per row when values are batched)."""
        missing = [node for node in self.order if node not in self.interventions and node not in values]
        if missing:
            raise ValueError(f"log_prob needs a value for every node; missing: {', '.join(missing)}")
        unknown = [name for name in values if name not in self.mechanisms]
        if unknown:
            raise KeyError(f"log_prob: {', '.join(map(repr, unknown))} are not nodes (nodes: {', '.join(self.order)})")
        inputs = self._check_inputs(inputs)
        observed = {name: as_tensor(value) for name, value in values.items() if name not in self.interventions}
        self._checked.clear()  # one assignment: check it whole, whatever was checked before
        with param_scope(store=self.state.params), trace() as tr:
            self._prepare()
            self.run(inputs, observed)
        total = 0.0
        for site in tr.trace.nodes.values():
            if contributes_log_prob(site):
                total = total + log_prob_of(site)
        return torch.as_tensor(total)


@contextlib.contextmanager
def _naming(node, what, value):  # for do values (no distribution to compare with)
    """A given value whose shape does not fit the plate: say which node's value, and its shape."""
    try:
        yield
    except ValueError as err:
        if "plate" not in str(err) or "batch shape" not in str(err):
            raise
        shape = tuple(torch.as_tensor(value).shape)
        raise ValueError(f"node '{node}': its {what} value of shape {shape} does not fit the rows "
                         f"(give one value, or one per row): {err}") from None


def _cycle_rows(draws, n):
    """Rows ``0..n-1`` of ``draws`` taken cyclically (row ``i`` is draw ``i % len(draws)``)."""
    index = torch.arange(n, device=draws.device) % draws.shape[0]
    return draws.index_select(0, index)


def _rows_of(value, n, rows):
    """The subsampled rows of a per-row input; anything else passes through."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value.index_select(0, rows)
    return value


def table_columns(data):
    """A pandas DataFrame or a dict of columns -> dict of name -> column, unconverted."""
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a pandas DataFrame
        return {str(column): data[column].to_numpy() for column in data.columns}
    if not hasattr(data, "items"):
        raise TypeError(f"data must be a dict of columns or a pandas DataFrame, got {type(data).__name__}")
    return dict(data.items())


def node_columns(data, labels, nodes, scalars=False):
    """Data for the nodes of an SCM -> dict node -> tensor, every column checked and named.

    Columns are read by :func:`causalppl.graph.columns.read_columns` (NaN,
    infinities, complex numbers, shapes that are not 1-d are errors naming
    the column), then by :func:`causalppl.graph.values.check_column` (strings
    for a node without labels). A column that is not a node is a
    ``ValueError`` naming it.

    >>> node_columns({"x": [1.0, 2.0], "t": [True, False]}, {}, ("x", "t"))
    {'x': tensor([1., 2.]), 't': tensor([1., 0.])}
    """
    names = [str(name) for name in (data.columns if hasattr(data, "columns") else getattr(data, "keys", list)())]
    unknown = [name for name in names if name not in nodes]
    if unknown:
        what = f"data column {unknown[0]!r} is not a node" if len(unknown) == 1 else \
            f"data columns {', '.join(map(repr, unknown))} are not nodes"
        raise ValueError(f"{what} (nodes: {', '.join(nodes)})")
    columns = read_columns(data, labels, scalars)
    return {name: check_column(name, column, labels.get(name)) for name, column in columns.items()}


def table_to_tensors(data, labels=None, scalars=True):
    """A dict of array-likes or a pandas DataFrame -> dict of name -> tensor.

    Columns are read by :func:`causalppl.graph.columns.read_columns`: bools,
    ints, floats, categories and strings are accepted; label columns become
    codes, into ``labels[name]`` when given (a node's labels). ``scalars``
    accepts 0-d values (one assignment, as ``SCM.log_prob`` takes).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"g": ["lo", "hi"], "t": [True, False]})
    >>> table_to_tensors(df, labels={"g": ("lo", "hi")})
    {'g': tensor([0., 1.]), 't': tensor([1., 0.])}
    """
    return {name: column.values for name, column in read_columns(data, labels, scalars).items()}

