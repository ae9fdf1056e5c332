"""Learnable mechanisms: linear-Gaussian, logistic, multinomial logistic, categorical table, MLP.

Each is a mechanism object: ``parents`` (a tuple of names), ``text`` (a short
description) and ``__call__(**parent_values) -> Distribution``. Its learnable
tensors live in the param store of the SCM that runs it, named after the node
(``"y.weight"``, ``"y.bias"``, ``"y.scale"``, ``"y.probs"``, ``"y.net.0.weight"``).
With ``bayesian=True`` weights and bias are latent sample sites instead
(``global_sites``), drawn by ``prepare()`` once per model run.

Parents enter as *features*: a continuous parent as itself, standardised by
the centre and scale in ``standardization`` (set from the data, so that fits
on raw columns are well conditioned); a categorical parent (one listed in
``parent_levels``) as one-hot indicators of its levels after the first.
A continuous node is modelled in standardised units too:
``y = centre + scale * (bias + features @ weight + noise)``. Params are
therefore in standardised units; :meth:`coefficients` reports them in the
data's own units.

>>> import torch, causalppl as cp
>>> m = LinearGaussian("y", ["x", "g"], parent_levels={"g": ("a", "b", "c")})
>>> m.feature_names
('x', 'g=b', 'g=c')
>>> cp.clear_param_store()
>>> m(x=torch.tensor([1.0]), g=torch.tensor([2.0])).mean
tensor([0.], grad_fn=<AddBackward0>)
"""

from __future__ import annotations

import math

import torch
from torch.distributions import constraints

from causalppl import distributions as dist
from causalppl.params import get_param_store
from causalppl.runtime import as_tensor, param, sample


class _Learnable:
    """Shared plumbing: names, labels, features, standardisation, specs."""

    name = ""
    bayesian = False

    def __init__(self, node, parents, labels=None, parent_levels=None, standardization=None):
        if not isinstance(node, str):
            raise TypeError(f"{self.name}: node must be a string name, got {node!r}")
        if isinstance(parents, str):
            parents = (parents,)
        parents = tuple(parents)
        for parent in parents:
            if not isinstance(parent, str):
                raise TypeError(
                    f"{self.name} for node '{node}': parent names must be strings, got {parent!r}"
                )
        if len(set(parents)) != len(parents):
            raise ValueError(f"{self.name} for node '{node}': parents {list(parents)} contain duplicates")
        if node in parents:
            raise ValueError(f"{self.name} for node '{node}': a node cannot be its own parent")
        self.node = node
        self.parents = parents
        self.labels = tuple(labels) if labels is not None else None
        levels = dict(parent_levels or {})
        for parent, parent_labels in levels.items():
            if parent not in parents:
                raise ValueError(
                    f"{self.name} for node '{node}': parent_levels names '{parent}', which is not a "
                    f"parent ({list(parents)})"
                )
            if isinstance(parent_labels, int):
                parent_labels = tuple(range(parent_labels))
            if len(parent_labels) < 2:
                raise ValueError(
                    f"{self.name} for node '{node}': categorical parent '{parent}' needs at least 2 "
                    f"levels, got {list(parent_labels)}"
                )
            levels[parent] = tuple(parent_labels)
        self.parent_levels = levels
        self.standardization = {}
        if standardization:
            self.set_standardization(standardization)
        # Params are created lazily (the first run); remember the device in use
        # now so that ``with torch.device("cuda"): scm = ...`` puts them there.
        self._device = torch.get_default_device()

    # -- description -------------------------------------------------------------

    @property
    def text(self):
        return f"{self.name}({', '.join(self.parents)})"

    def __repr__(self):
        return f"{self.name}(node={self.node!r}, parents={self.parents!r})"

    @property
    def global_sites(self):
        """The sample sites ``prepare`` draws (Bayesian mode only)."""
        return ()

    def spec(self):
        """A plain-data description (no code) from which :func:`mechanism_from_spec` rebuilds it."""
        spec = {"kind": self.name, "node": self.node, "parents": list(self.parents)}
        if self.labels is not None:
            spec["labels"] = list(self.labels)
        if self.parent_levels:
            spec["parent_levels"] = {p: list(v) for p, v in self.parent_levels.items()}
        if self.standardization:
            spec["standardization"] = {k: list(v) for k, v in self.standardization.items()}
        spec.update(self._options())
        return spec

    def _options(self):
        return {}

    # -- features and standardisation ----------------------------------------------

    @property
    def continuous_parents(self):
        return tuple(p for p in self.parents if p not in self.parent_levels)

    @property
    def feature_names(self):
        """One name per weight: a continuous parent, or ``parent=level`` for each non-first level."""
        names = []
        for parent in self.parents:
            if parent in self.parent_levels:
                names += [f"{parent}={level}" for level in self.parent_levels[parent][1:]]
            else:
                names.append(parent)
        return tuple(names)

    @property
    def num_features(self):
        return len(self.feature_names)

    def set_standardization(self, stats):
        """Set the centre and scale of the node and its continuous parents.

        ``stats`` maps names to ``(centre, scale)``; names it lacks keep
        ``(0, 1)``. Only meaningful before the params are learned: they are in
        the standardised units this defines.
        """
        wanted = set(self.continuous_parents) | ({self.node} if self._standardizes_node else set())
        chosen = {}
        for name in wanted:
            if name in stats:
                centre, scale = (float(v) for v in stats[name])
                if not (math.isfinite(centre) and math.isfinite(scale) and scale > 0):
                    raise ValueError(
                        f"node '{self.node}': cannot standardise '{name}' by centre {centre} and "
                        f"scale {scale} (expected finite numbers and a positive scale)"
                    )
                chosen[name] = (centre, scale)
        self.standardization = chosen

    _standardizes_node = False

    def _centre_scale(self, name):
        return self.standardization.get(name, (0.0, 1.0))

    def _features(self, values):
        """The feature columns (a list of tensors that broadcast together)."""
        features = []
        for parent, value in zip(self.parents, values, strict=True):
            if parent in self.parent_levels:
                levels = len(self.parent_levels[parent])
                codes = value.long() if value.is_floating_point() else value
                dtype = torch.get_default_dtype()
                features += [(codes == k).to(dtype) for k in range(1, levels)]
            else:
                centre, scale = self._centre_scale(parent)
                value = value if value.is_floating_point() else value.to(torch.get_default_dtype())
                features.append((value - centre) / scale if (centre, scale) != (0.0, 1.0) else value)
        return features

    # -- params --------------------------------------------------------------------

    def _device_for(self, values=()):
        for value in values:
            if isinstance(value, torch.Tensor):
                return value.device
        current = torch.get_default_device()
        return current if current.type != "cpu" else self._device

    def _param(self, suffix, init, constraint=constraints.real, values=()):
        """The param ``node.suffix``; ``init(device)`` runs only when it is created."""
        return param(f"{self.node}.{suffix}", lambda: init(self._device_for(values)), constraint)

    def _values(self, parent_values):
        missing = [p for p in self.parents if p not in parent_values]
        unknown = [p for p in parent_values if p not in self.parents]
        if missing or unknown:
            raise TypeError(
                f"node '{self.node}': {self.name} expects values for its parents {list(self.parents)}, "
                f"got {sorted(parent_values)}"
            )
        return [as_tensor(parent_values[p]) for p in self.parents]

    def _stored(self, store, suffix):
        store = store if store is not None else get_param_store()
        name = f"{self.node}.{suffix}"
        if name not in store:
            raise KeyError(f"node '{self.node}': param '{name}' has not been learned yet (fit the SCM first)")
        return store[name].detach()


class _Linear(_Learnable):
    """``bias + features @ weight``, with point-estimate or latent (Bayesian) coefficients."""

    def __init__(self, node, parents, bayesian=False, prior_scale=1.0, **options):
        super().__init__(node, parents, **options)
        if not float(prior_scale) > 0:
            raise ValueError(
                f"{self.name} for node '{node}': prior_scale must be positive, got {prior_scale!r}"
            )
        self.bayesian = bool(bayesian)
        self.prior_scale = float(prior_scale)
        self._drawn = None  # (weight, bias) of the current run, in Bayesian mode

    def _options(self):
        return {"bayesian": self.bayesian, "prior_scale": self.prior_scale}

    @property
    def global_sites(self):
        if not self.bayesian:
            return ()
        return ((f"{self.node}.weight",) if self.parents else ()) + (f"{self.node}.bias",)

    @property
    def text(self):
        text = super().text
        if self.bayesian:
            text = text[:-1] + (", " if self.parents else "") + "bayesian=True)"
        return text

    def prepare(self):
        """Bayesian mode: draw weights and bias once per model run (outside the rows plate)."""
        if not self.bayesian:
            return
        device = self._device_for()
        zero = torch.zeros((), device=device)
        prior = dist.Normal(zero, torch.full((), self.prior_scale, device=device))
        weight = None
        if self.parents:
            weight = sample(f"{self.node}.weight", dist.Independent(prior.expand([self.num_features]), 1))
        bias = sample(f"{self.node}.bias", prior)
        self._drawn = (weight, bias)

    def _linear(self, values):
        if self.bayesian:
            if self._drawn is None:
                raise RuntimeError(
                    f"node '{self.node}': the Bayesian weights of {self.text} are drawn by prepare(), "
                    "which the lowered model calls once per run; call prepare() before using it directly"
                )
            weight, bias = self._drawn
        else:
            size = self.num_features
            weight = None
            if size:
                weight = self._param("weight", lambda d: torch.zeros(size, device=d), values=values)
            bias = self._param("bias", lambda d: torch.zeros((), device=d), values=values)
        out = bias
        for i, feature in enumerate(self._features(values)):
            # weight is (F,) for point estimates, (..., 1, F) with vectorised
            # particles or (rows, F) per-row draws: weight[..., i] broadcasts.
            out = out + weight[..., i] * feature
        return out

    def coefficients(self, store=None):
        """Bias and weights in the data's units: ``{"bias": float, "weights": {feature: float}}``.

        Point estimates only (a Bayesian fit's weights are a posterior; see
        ``FitResult.summary``).
        """
        if self.bayesian:
            raise ValueError(f"node '{self.node}': Bayesian coefficients are a posterior, not one value")
        weight = self._stored(store, "weight").tolist() if self.parents else []
        bias = float(self._stored(store, "bias"))
        return self._to_data_units(bias, weight)

    def _to_data_units(self, bias, weight):
        """Undo the standardisation: ``(bias, weights)`` in the data's units."""
        node_centre, node_scale = self._centre_scale(self.node) if self._standardizes_node else (0.0, 1.0)
        weights = {}
        index = 0
        for parent in self.parents:
            if parent in self.parent_levels:
                for level in self.parent_levels[parent][1:]:
                    weights[f"{parent}={level}"] = node_scale * weight[index]
                    index += 1
            else:
                centre, scale = self._centre_scale(parent)
                weights[parent] = node_scale * weight[index] / scale
                bias -= weight[index] * centre / scale
                index += 1
        return {"bias": node_centre + node_scale * bias, "weights": weights}


class LinearGaussian(_Linear):
    """``Normal(bias + sum_f weight_f * feature_f, scale)`` with a learnable positive ``scale``.

    >>> import causalppl as cp
    >>> cp.clear_param_store()
    >>> m = LinearGaussian("y", ["x"])
    >>> m(x=torch.tensor([1.0, 2.0])).mean
    tensor([0., 0.], grad_fn=<AddBackward0>)
    >>> sorted(cp.get_param_store().keys())
    ['y.bias', 'y.scale', 'y.weight']
    """

    name = "LinearGaussian"
    _standardizes_node = True

    def __call__(self, **parent_values):
        values = self._values(parent_values)
        loc = self._linear(values)
        scale = self._param("scale", lambda d: torch.ones((), device=d), constraints.positive, values)
        centre, spread = self._centre_scale(self.node)
        if (centre, spread) != (0.0, 1.0):
            loc, scale = centre + spread * loc, spread * scale
        return dist.Normal(loc, scale)

    def coefficients(self, store=None):
        """Bias, weights and noise scale in the data's units.

        >>> import causalppl as cp
        >>> m = LinearGaussian("y", ["x"], standardization={"y": (10.0, 2.0), "x": (1.0, 4.0)})
        >>> store = cp.ParamStore()
        >>> store["y.weight"], store["y.bias"] = torch.tensor([1.0]), torch.tensor(0.0)
        >>> store["y.scale"] = torch.tensor(0.5)
        >>> m.coefficients(store)
        {'bias': 9.5, 'weights': {'x': 0.5}, 'scale': 1.0}
        """
        out = super().coefficients(store)
        out["scale"] = self._centre_scale(self.node)[1] * float(self._stored(store, "scale"))
        return out


class Logistic(_Linear):
    """``Bernoulli(logits = bias + sum_f weight_f * feature_f)``: a binary node.

    >>> m = Logistic("t", ["x"])
    >>> m(x=torch.tensor([1.0])).probs
    tensor([0.5000], grad_fn=<SigmoidBackward0>)
    """

    name = "Logistic"

    def __call__(self, **parent_values):
        return dist.Bernoulli(logits=self._linear(self._values(parent_values)))


class MultinomialLogistic(_Learnable):
    """``Categorical(logits)`` with ``logits[k] = bias[k] + features @ weight[k]`` (state 0 the reference).

    For a categorical node with continuous (or mixed) parents.

    >>> import causalppl as cp
    >>> cp.clear_param_store()
    >>> m = MultinomialLogistic("c", ["x"], num_categories=3)
    >>> m(x=torch.zeros(2)).probs
    tensor([[0.3333, 0.3333, 0.3333],
            [0.3333, 0.3333, 0.3333]], grad_fn=<SoftmaxBackward0>)
    """

    name = "MultinomialLogistic"

    def __init__(self, node, parents, num_categories, **options):
        super().__init__(node, parents, **options)
        if int(num_categories) < 2:
            raise ValueError(f"{self.name} for node '{node}': num_categories must be >= 2, got {num_categories}")
        self.num_categories = int(num_categories)

    def _options(self):
        return {"num_categories": self.num_categories}

    @property
    def text(self):
        return f"{self.name}({', '.join(self.parents + (f'K={self.num_categories}',))})"

    def __call__(self, **parent_values):
        values = self._values(parent_values)
        others, size = self.num_categories - 1, self.num_features
        bias = self._param("bias", lambda d: torch.zeros(others, device=d), values=values)
        logits = bias
        if size:
            weight = self._param("weight", lambda d: torch.zeros(others, size, device=d), values=values)
            for i, feature in enumerate(self._features(values)):
                logits = logits + weight[:, i] * feature.unsqueeze(-1)
        logits = torch.cat([torch.zeros_like(logits[..., :1]), logits], dim=-1)
        return dist.Categorical(logits=logits)

    # Each class's log-odds undo the parents' standardisation as a linear mechanism's do.
    _to_data_units = _Linear._to_data_units

    def coefficients(self, store=None):
        """Per class after the first (by label): its log-odds against class 0, in the data's units.

        >>> import causalppl as cp
        >>> m = MultinomialLogistic("c", ["x"], num_categories=3, standardization={"x": (1.0, 2.0)})
        >>> store = cp.ParamStore()
        >>> store["c.bias"], store["c.weight"] = torch.tensor([0.0, 1.0]), torch.tensor([[2.0], [0.0]])
        >>> m.coefficients(store)
        {1: {'bias': -1.0, 'weights': {'x': 1.0}}, 2: {'bias': 1.0, 'weights': {'x': 0.0}}}
        """
        bias = self._stored(store, "bias").tolist()
        weight = self._stored(store, "weight").tolist() if self.parents else [[] for _ in bias]
        labels = self.labels or tuple(range(self.num_categories))
        return {labels[k + 1]: self._to_data_units(b, w) for k, (b, w) in enumerate(zip(bias, weight, strict=True))}


class CategoricalTable(_Learnable):
    """A conditional probability table over discrete parents.

    The param ``node.probs`` has shape ``[*parent_cardinalities, num_categories]``
    (each row on the simplex); a row is selected by the parents' integer values.
    With ``bayesian=True`` the table is a latent ``Dirichlet(concentration)`` site.

    >>> m = CategoricalTable("c", ["a"], num_categories=3, parent_cardinalities=[2])
    >>> m(a=torch.tensor([0.0, 1.0])).probs.shape
    torch.Size([2, 3])
    """

    name = "CategoricalTable"

    def __init__(self, node, parents, num_categories, parent_cardinalities=(), bayesian=False,
                 concentration=1.0, **options):
        super().__init__(node, parents, **options)
        if isinstance(parent_cardinalities, dict):
            missing = [p for p in self.parents if p not in parent_cardinalities]
            if missing:
                raise ValueError(
                    f"CategoricalTable for node '{node}': no cardinality for parent(s) {missing}"
                )
            parent_cardinalities = [parent_cardinalities[p] for p in self.parents]
        cards = tuple(int(c) for c in parent_cardinalities)
        if len(cards) != len(self.parents):
            raise ValueError(
                f"CategoricalTable for node '{node}': {len(self.parents)} parents {list(self.parents)} "
                f"but {len(cards)} parent cardinalities {list(cards)}"
            )
        if int(num_categories) < 2 or any(c < 1 for c in cards):
            raise ValueError(
                f"CategoricalTable for node '{node}': expected num_categories >= 2 and parent "
                f"cardinalities >= 1, got {num_categories} and {list(cards)}"
            )
        if self.labels is not None and len(self.labels) != int(num_categories):
            raise ValueError(
                f"CategoricalTable for node '{node}': {len(self.labels)} labels {list(self.labels)} "
                f"for {num_categories} categories"
            )
        self.num_categories = int(num_categories)
        self.parent_cardinalities = cards
        self.bayesian = bool(bayesian)
        self.concentration = float(concentration)
        self._drawn = None

    def _options(self):
        return {"num_categories": self.num_categories, "parent_cardinalities": list(self.parent_cardinalities),
                "bayesian": self.bayesian, "concentration": self.concentration}

    @property
    def global_sites(self):
        return (f"{self.node}.probs",) if self.bayesian else ()

    @property
    def text(self):
        return f"CategoricalTable({', '.join(self.parents + (f'K={self.num_categories}',))})"

    def _shape(self):
        return self.parent_cardinalities + (self.num_categories,)

    def prepare(self):
        """Bayesian mode: draw the table once per model run."""
        if not self.bayesian:
            return
        alpha = torch.full(self._shape(), self.concentration, device=self._device_for())
        self._drawn = sample(f"{self.node}.probs", _to_event(dist.Dirichlet(alpha), len(self.parents)))

    def __call__(self, **parent_values):
        values = self._values(parent_values)
        if self.bayesian:
            if self._drawn is None:
                raise RuntimeError(
                    f"node '{self.node}': the Bayesian table is drawn by prepare(), which the lowered "
                    "model calls once per run; call prepare() before using it directly"
                )
            table = self._drawn
        else:
            shape = self._shape()
            table = self._param(
                "probs", lambda d: torch.full(shape, 1.0 / shape[-1], device=d), constraints.simplex, values
            )
        if not self.parents:
            return dist.Categorical(probs=table)
        # Flatten the parent dims, then pick each row's entry with take_along_dim,
        # which broadcasts a (particles, 1, ...) table against (particles, n) parents.
        flat = 0
        stride = 1
        triples = zip(self.parents, values, self.parent_cardinalities, strict=True)
        for parent, value, card in reversed(list(triples)):
            index = value.long()
            if index.device.type == "cpu" and index.numel() and (index.min() < 0 or index.max() >= card):
                raise ValueError(
                    f"node '{self.node}': parent '{parent}' must take values in 0..{card - 1} "
                    f"(its cardinality), got values in {int(index.min())}..{int(index.max())}"
                )
            flat = flat + index * stride
            stride *= card
        flat = torch.as_tensor(flat)
        table = table.reshape(table.shape[: table.dim() - len(self._shape())] + (stride, self.num_categories))
        batch_dims = max(flat.dim(), table.dim() - 2)
        table = table.reshape((1,) * (batch_dims - (table.dim() - 2)) + table.shape)
        index = flat.reshape((1,) * (batch_dims - flat.dim()) + flat.shape)[..., None, None]
        probs = torch.take_along_dim(table, index, dim=-2).squeeze(-2)
        return dist.Categorical(probs=probs)


def _to_event(fn, dims):
    return dist.Independent(fn, dims) if dims else fn


class MLPGaussian(_Learnable):
    """``Normal(mlp(features), scale)`` with one tanh hidden layer, in standardised units.

    The network's weights are params of the SCM's store (``node.net.0.weight``,
    ``node.net.0.bias``, ``node.net.2.weight``, ``node.net.2.bias``), so each
    SCM owns its network.

    >>> import causalppl as cp
    >>> cp.clear_param_store()
    >>> m = MLPGaussian("y", ["x"], hidden=4)
    >>> m(x=torch.zeros(3)).mean.shape
    torch.Size([3])
    >>> sorted(cp.get_param_store().keys())[:2]
    ['y.net.0.bias', 'y.net.0.weight']
    """

    name = "MLPGaussian"
    _standardizes_node = True

    def __init__(self, node, parents, hidden=16, **options):
        super().__init__(node, parents, **options)
        if not self.parents:
            raise ValueError(
                f"MLPGaussian for node '{node}': needs at least one parent (use LinearGaussian for a root)"
            )
        if int(hidden) < 1:
            raise ValueError(
                f"MLPGaussian for node '{node}': hidden must be a positive integer, got {hidden!r}"
            )
        self.hidden = int(hidden)

    def _options(self):
        return {"hidden": self.hidden}

    def _layer(self, index, fan_in, fan_out, values):
        # torch.nn.Linear's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1 / math.sqrt(fan_in)

        def uniform(shape):
            return lambda d: (torch.rand(shape, device=d) * 2 - 1) * bound

        weight = self._param(f"net.{index}.weight", uniform((fan_out, fan_in)), values=values)
        bias = self._param(f"net.{index}.bias", uniform((fan_out,)), values=values)
        return weight, bias

    def __call__(self, **parent_values):
        values = self._values(parent_values)
        inputs = torch.stack(torch.broadcast_tensors(*self._features(values)), dim=-1)
        w1, b1 = self._layer(0, self.num_features, self.hidden, values)
        w2, b2 = self._layer(2, self.hidden, 1, values)
        loc = (torch.tanh(inputs @ w1.T + b1) @ w2.T + b2).squeeze(-1)
        scale = self._param("scale", lambda d: torch.ones((), device=d), constraints.positive, values)
        centre, spread = self._centre_scale(self.node)
        return dist.Normal(centre + spread * loc, spread * scale)


KINDS = {cls.name: cls for cls in (LinearGaussian, Logistic, MultinomialLogistic, CategoricalTable, MLPGaussian)}


def mechanism_from_spec(spec):
    """Rebuild a learnable mechanism from its :meth:`spec` (plain data; nothing is evaluated).

    >>> m = LinearGaussian("y", ["x"], standardization={"y": (1.0, 2.0)})
    >>> mechanism_from_spec(m.spec()).spec() == m.spec()
    True
    """
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"unknown learnable mechanism kind {kind!r}; known kinds: {', '.join(KINDS)}")
    node, parents = spec.pop("node"), spec.pop("parents")
    return KINDS[kind](node, parents, **spec)
