"""A fit's SVI step on the compiled graph: batched log joint, flat guide, one flat leaf of params.

:func:`compiled_step` replaces the reference step of :func:`causalppl.causal.fit.fit`
(guide and model run through the handler stack, one site at a time) by a
straight line of tensor operations, when it can show the two compute the
same loss:

* the model's log joint is :mod:`causalppl.graph.compiled`'s (linear nodes
  in one matmul, tables in one gather, ...);
* the autoguide (``AutoNormal`` or ``AutoDelta``) draws all its sites at once:
  one ``randn`` for the global latents, one for the per-row ones;
* the params the step learns are packed into one flat leaf
  (:class:`causalppl.params.FlatParams`), so the optimiser makes one update;
  the stores keep showing every param under its own name.

Set-up runs one reference evaluation of the loss (off the random stream):
it creates the params, sets up the guide and runs every validation once.
The compiled loss is then checked against that evaluation's traces, model
and guide term by term; any disagreement (or anything the compiler does not
cover) leaves the fit on the reference path, with the reason in
``FitResult.engine_note``.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
from torch.distributions.transforms import AffineTransform, ComposeTransform, ExpTransform, IndependentTransform

from causalppl.graph.compiled import HALF_LOG_2PI, Blocks, NotCompilable, compile_model
from causalppl.infer.autoguide import AutoDelta, AutoNormal
from causalppl.infer.elbo import Trace_ELBO
from causalppl.optim import PyroOptim
from causalppl.params import FlatParams
from causalppl.trace import contributes_log_prob, log_prob_of

COMPILE_OPTIONS = (None, True, False)


class Reference(Exception):
    """Why a fit runs the reference step (the message is kept as ``FitResult.engine_note``)."""


def compiled_step(svi, model, guide, optim, stores, fixed, hidden, torch_compile=False):
    """A :class:`CompiledStep` that takes ``svi``'s steps, or raise :class:`Reference` saying why not.

    ``model`` is fit's data-bound model (``lowered``, ``data``,
    ``subsample_size``, ``inputs``); ``guide`` the unscoped autoguide;
    ``optim`` the optimiser as given; ``stores`` ``(scm params, guide params)``;
    ``fixed`` the names of the SCM's params the fit holds fixed (``None``: all
    of them); ``hidden`` the latent nodes the model hides.
    """
    if type(svi.loss) is not Trace_ELBO or svi.loss.num_particles != 1:
        raise Reference("the compiled step draws one particle per step")
    if type(guide) not in (AutoNormal, AutoDelta):
        raise Reference(f"the guide is a {type(guide).__name__}; the compiled step draws AutoNormal and "
                        "AutoDelta guides")
    if guide.create_plates is not None:
        raise Reference("the guide has its own create_plates")
    base = _innermost(optim)
    if base is None or not isinstance(base.optim_args, dict):
        raise Reference("the optimiser is not a causalppl.optim optimiser with one set of arguments")
    try:
        compiled = compile_model(model.lowered, model.data, model.subsample_size, model.inputs, hidden)
    except NotCompilable as err:
        raise Reference(str(err)) from None
    # One reference evaluation, off the random stream: params, guide set-up, validation.
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            svi.evaluate_loss()
        except Exception as err:  # the reference step raises it again, where users expect it
            raise Reference(f"the reference evaluation raised {type(err).__name__}") from err
    trainable = set() if fixed is None else set(stores[0].keys()) - set(fixed)
    step = CompiledStep(svi, compiled, guide, base, stores, trainable, torch_compile)
    try:
        step.check(*(tr for _, tr in svi.loss.last_traces))
    except BaseException:
        step.close()
        raise
    return step


def _innermost(optim):
    """The :class:`PyroOptim` under fit's wrappers (which only filter the params passed on)."""
    while optim is not None and not isinstance(optim, PyroOptim) and hasattr(optim, "optim"):
        optim = optim.optim
    return optim if isinstance(optim, PyroOptim) else None


class _Reader:
    """Reads a list of params (constrained) out of the flat leaf, or as constants when not learned."""

    def __init__(self, store, names, packed, trainable):
        self.pieces = []
        for name in names:
            transform = store._transforms[name]
            if name in trainable:
                start, stop = packed.span(store, name)
                self.pieces.append((start, stop, store.leaf(name).shape, transform))
            else:
                self.pieces.append(store[name].detach())
        spans = [p for p in self.pieces if isinstance(p, tuple)]
        transforms = [_elementwise(p[3]) for p in spans]
        same = all(t is not False and t == transforms[0] for t in transforms)
        contiguous = len(spans) == len(self.pieces) and all(
            a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        self.span = (spans[0][0], spans[-1][1], transforms[0]) if spans and contiguous and same else None

    def each(self, flat):
        out = []
        for piece in self.pieces:
            if isinstance(piece, torch.Tensor):
                out.append(piece)
                continue
            start, stop, shape, transform = piece
            value = flat[start:stop].view(shape)
            out.append(value if transform is None else transform(value))
        return out

    def vector(self, flat):
        if self.span is not None:
            start, stop, transform = self.span
            value = flat[start:stop]
            return value if transform is None else transform(value)
        return torch.cat([value.reshape(-1) for value in self.each(flat)])


def _elementwise(transform):
    """A transform applied to many params at once: ``None`` (identity), ``torch.exp``, an elementwise
    transform itself, or ``False`` for one that acts on whole vectors (a simplex's)."""
    if transform is None:
        return None
    if _is_exp(transform):
        return torch.exp  # transform_to(positive) is exp, then an affine map by 1 and 0: the same numbers
    return transform if transform.domain.event_dim == 0 else False


def _is_exp(transform):
    if isinstance(transform, ExpTransform):
        return True
    if isinstance(transform, ComposeTransform) and transform.parts and isinstance(transform.parts[0], ExpTransform):
        rest = transform.parts[1:]
        return all(isinstance(t, AffineTransform) and _is_number(t.loc, 0.0) and _is_number(t.scale, 1.0)
                   for t in rest)
    return False


def _is_identity(transform):
    """An identity map (a real vector's ``biject_to``: an empty composition, maybe made independent)."""
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, ComposeTransform) and not transform.parts


def _is_number(value, number):
    return (isinstance(value, (int, float)) and value == number) or (
        isinstance(value, torch.Tensor) and value.numel() == 1 and float(value) == number)


class CompiledStep:
    """SVI steps of one fit on the compiled graph; quacks like :class:`causalppl.infer.SVI` for fit's loop.

    Call :meth:`close` when done: it gives every param its own leaf again.
    """

    def __init__(self, svi, compiled, guide, optim, stores, trainable, torch_compile=False):
        self.svi = svi
        self.compiled = compiled
        self.guide = guide
        self.optim = optim
        self.num_steps = 0
        model_store, guide_store = stores
        self.normal = type(guide) is AutoNormal
        sites = [site for site, _ in compiled.global_sites]
        latents = list(compiled.row_latents)
        self._check_guide_sites(sites, latents)
        missing = [name for _, names in compiled.param_blocks for name in names if name not in model_store]
        if missing:
            raise Reference(f"param '{missing[0]}' was not created by the model")
        names = [guide.site_param_names(site) for site in sites + latents]
        parts = list(zip(*names, strict=True)) if names else [()]
        # Layout of the flat leaf: the guide's params (locs of the global sites, locs of the per-row
        # ones, then the scales likewise), then the SCM's learned params block by block.
        entries = [(guide_store, name) for part in parts for name in part]
        learned = [name for _, block in compiled.param_blocks for name in block if name in trainable]
        entries += [(model_store, name) for name in learned]
        if not entries:
            raise Reference("nothing to learn")
        try:
            self.packed = FlatParams(entries)
        except ValueError as err:
            raise Reference(str(err)) from None
        try:
            self._layout(guide_store, sites, latents, parts)
            self._readers = {key: _Reader(model_store, block, self.packed, set(learned))
                             for key, block in compiled.param_blocks}
        except BaseException:
            self.packed.unpack()
            raise
        self._generic = bool(compiled.generic)
        self._loss = self._loss_impl
        self.engine = "compiled"
        if torch_compile:
            self._loss = _torch_compiled(self._loss_impl, self.packed.flat.device)
            self.engine = "compiled+torch.compile"
        self._compiled_ok = not torch_compile

    # -- set-up -----------------------------------------------------------------------------

    def _check_guide_sites(self, sites, latents):
        guide, compiled = self.guide, self.compiled
        if set(guide._sites) != set(sites) | set(latents):
            raise Reference(f"the guide covers {sorted(guide._sites)}, the compiled model needs "
                            f"{sorted(set(sites) | set(latents))}")
        for name in sites:
            if guide._sites[name]["frames"]:
                raise Reference(f"site '{name}' is inside a plate")
        rows = ("_rows",) if compiled.plate else ()
        for name in latents:
            info = guide._sites[name]
            if tuple(f.name for f in info["frames"]) != rows or info["event_dim"] != 0:
                raise Reference(f"latent node '{name}' is not one value per row")

    def _layout(self, guide_store, sites, latents, parts):
        compiled = self.compiled
        span = self.packed.span
        first_names = dict(zip(sites + latents, parts[0], strict=True)) if sites or latents else {}
        shapes = {site: guide_store.leaf(name).shape for site, name in first_names.items()}
        self.n_global = sum(shapes[s].numel() for s in sites)
        self.n_latent = len(latents)
        first = parts[0]
        self._g_loc = (span(guide_store, first[0])[0], span(guide_store, first[len(sites) - 1])[1]) if sites else None
        self._r_loc = (span(guide_store, first[len(sites)])[0], span(guide_store, first[-1])[1]) if latents else None
        if self.normal and (sites or latents):
            second = parts[1]
            self._g_scale = (span(guide_store, second[0])[0], span(guide_store, second[len(sites) - 1])[1]) \
                if sites else None
            self._r_scale = (span(guide_store, second[len(sites)])[0], span(guide_store, second[-1])[1]) \
                if latents else None
        # Sites whose support needs a transform (a simplex, a positive value): drawn whole, then mapped.
        self._g_transforms, offset = [], 0
        for name in sites:
            # AutoNormal draws in biject_to's space; AutoDelta's param lives in its store's transform_to space.
            transform = self._site_transform(guide_store, name)
            self._g_transforms.append((offset, offset + shapes[name].numel(), shapes[name], transform))
            offset += shapes[name].numel()
        self._g_identity = all(t[3] is None for t in self._g_transforms)
        self._r_transforms = []
        for name in latents:
            self._r_transforms.append(self._site_transform(guide_store, name))
        self._r_identity = all(t is None for t in self._r_transforms)
        self._frame_rows = compiled.rows if compiled.plate else 1

    def _site_transform(self, guide_store, name):
        """The map from the flat values of site ``name`` to its support (``None``: they are its values)."""
        info = self.guide._sites[name]
        transform = info["transform"] if self.normal else guide_store._transforms[self.guide.site_param_names(name)[0]]
        return None if transform is None or _is_identity(transform) else transform


    def check(self, model_trace, guide_trace):
        """The compiled loss at the reference run's values must equal the reference's, term by term."""
        rows = None
        for tr in (guide_trace, model_trace):
            site = tr.nodes.get("_rows")
            if site is not None and site["type"] == "plate":
                rows = site["value"]
        values = {name: site["value"] for name, site in guide_trace.nodes.items() if site["type"] == "sample"}
        flat = self.packed.flat
        with torch.no_grad():
            eps_g, eps_r = self._noise_for(flat, values, rows)
            z, latents, log_q = self._guide(flat, rows, eps_g, eps_r)
            log_p = self.compiled.evaluate(self._blocks(flat, z), latents, rows)
            ref_p = sum(site_log_prob(s) for s in model_trace.nodes.values() if contributes_log_prob(s))
            ref_q = sum(site_log_prob(s) for s in guide_trace.nodes.values() if contributes_log_prob(s))
            expected = self.compiled.log_joint(values, rows)  # the same values through the dict reader
        for what, ours, theirs in (("model log joint", log_p, ref_p), ("guide log density", log_q, ref_q),
                                   ("model log joint (by site)", expected, ref_p)):
            ours, theirs = float(ours), float(theirs)
            if not (math.isfinite(ours) and math.isfinite(theirs)):
                raise Reference(f"the reference {what} is not finite ({theirs})")
            if abs(ours - theirs) > 1e-4 * max(1.0, abs(theirs)):
                warnings.warn(f"the compiled {what} ({ours}) differs from the reference ({theirs}); "
                              "the fit runs on the reference path", RuntimeWarning, stacklevel=4)
                raise Reference(f"the compiled {what} ({ours}) differs from the reference ({theirs})")

    def _noise_for(self, flat, values, rows):
        """The standard normal draws that make the flat guide produce ``values`` (for the check)."""
        if not self.normal:
            return None, None
        guide = self.guide
        eps_g = eps_r = None
        if self.n_global:
            pieces = []
            for name, _ in self.compiled.global_sites:
                info = guide._sites[name]
                value = values[name]
                u = value if info["identity"] else info["transform"].inv(value)
                pieces.append(u.reshape(-1))
            u = torch.cat(pieces)
            loc = flat[self._g_loc[0]:self._g_loc[1]]
            scale = flat[self._g_scale[0]:self._g_scale[1]].exp()
            eps_g = (u - loc) / scale
        if self.n_latent:
            pieces = []
            for name in self.compiled.row_latents:
                info = guide._sites[name]
                value = values[name].reshape(-1)
                pieces.append(value if info["identity"] else info["transform"].inv(value))
            u = torch.stack(pieces)
            loc, scale = self._row_params(flat, rows)
            eps_r = (u - loc) / scale.exp()
        return eps_g, eps_r

    # -- one step ---------------------------------------------------------------------------

    def _row_params(self, flat, rows):
        n = self._frame_rows
        loc = flat[self._r_loc[0]:self._r_loc[1]].view(self.n_latent, n)
        scale = flat[self._r_scale[0]:self._r_scale[1]].view(self.n_latent, n) if self.normal else None
        if rows is not None:
            loc = loc.index_select(1, rows)
            scale = scale.index_select(1, rows) if scale is not None else None
        return loc, scale

    def _guide(self, flat, rows, eps_g, eps_r):
        """The guide's draw: the flat vector of global latents, the latent matrix, and log q (plate-scaled)."""
        log_q = 0.0
        z = latents = None
        if self.n_global:
            loc = flat[self._g_loc[0]:self._g_loc[1]]
            if self.normal:
                log_scale = flat[self._g_scale[0]:self._g_scale[1]]
                z = loc + log_scale.exp() * eps_g
                log_q = -0.5 * (eps_g * eps_g).sum() - log_scale.sum() - self.n_global * HALF_LOG_2PI
            else:
                z = loc
            if not self._g_identity:
                z, log_q = self._map_globals(z, log_q)
        if self.n_latent:
            loc, log_scale = self._row_params(flat, rows)
            if self.normal:
                u = loc + log_scale.exp() * eps_r
                row_q = -0.5 * (eps_r * eps_r).sum() - log_scale.sum() - eps_r.numel() * HALF_LOG_2PI
            else:
                u, row_q = loc, 0.0
            if not self._r_identity:
                u, row_q = self._map_rows(u, row_q)
            if rows is not None and self.compiled.subsample_size is not None:
                row_q = row_q * (self.compiled.rows / len(rows))
            log_q = log_q + row_q
            latents = u.T
        return z, latents, log_q

    def _map_globals(self, u, log_q):
        pieces = []
        for start, stop, shape, transform in self._g_transforms:
            piece = u[start:stop].view(shape)
            if transform is not None:
                value = transform(piece)
                if self.normal:
                    log_q = log_q - transform.log_abs_det_jacobian(piece, value).sum()
                piece = value
            pieces.append(piece.reshape(-1))
        return torch.cat(pieces), log_q

    def _map_rows(self, u, row_q):
        out = []
        for k, transform in enumerate(self._r_transforms):
            piece = u[k]
            if transform is not None:
                value = transform(piece)
                if self.normal:
                    row_q = row_q - transform.log_abs_det_jacobian(piece, value).sum()
                piece = value
            out.append(piece)
        return torch.stack(out), row_q

    def _blocks(self, flat, z):
        compiled, readers = self.compiled, self._readers
        blocks = Blocks()
        offset = 0
        if z is not None:
            weights = compiled.n_bayes_weights
            biases = len(compiled.bayes_nodes)
            blocks.w_bayes = z[:weights] if weights else None
            blocks.b_bayes = z[weights:weights + biases] if biases else None
            offset = weights + biases
        for key in ("w_point", "b_point", "scale"):
            if key in readers:
                setattr(blocks, key, readers[key].vector(flat))
        for t in compiled.tables:
            if t.bayesian:
                shape = t.cardinalities + (t.num_categories,)
                size = math.prod(shape)
                blocks.tables.append(z[offset:offset + size].view(shape))
                offset += size
            else:
                blocks.tables.append(readers[f"table.{t.node}"].each(flat)[0])
        for m in compiled.mlps:
            blocks.mlps.append(tuple(readers[f"mlp.{m.node}"].each(flat)))
        return blocks

    def _loss_impl(self, flat, rows, eps_g, eps_r):
        z, latents, log_q = self._guide(flat, rows, eps_g, eps_r)
        return log_q - self.compiled.evaluate(self._blocks(flat, z), latents, rows)

    def _noise(self, device):
        compiled = self.compiled
        rows = None
        if compiled.subsample_size is not None:
            rows = torch.randperm(compiled.rows, device=device)[:compiled.subsample_size]
        eps_g = torch.randn(self.n_global, device=device) if self.normal and self.n_global else None
        count = len(rows) if rows is not None else self._frame_rows
        eps_r = torch.randn(self.n_latent, count, device=device) if self.normal and self.n_latent else None
        return rows, eps_g, eps_r

    def step(self):
        """One SVI step; returns the loss before it (a float)."""
        flat = self.packed.flat
        noise = self._noise(flat.device)
        with _no_validation() if self._generic else contextlib.nullcontext():
            loss = self._run(flat, noise)
            loss.backward()
        value = loss.item()
        self.num_steps += 1
        if not math.isfinite(value):
            flat.grad = None
            self._raise_nonfinite(value)
        self.optim([flat])
        flat.grad = None
        return value

    def _run(self, flat, noise):
        if self._compiled_ok:
            return self._loss(flat, *noise)
        try:
            loss = self._loss(flat, *noise)
        except Exception as err:  # no compiler toolchain, an unsupported op, ...
            warnings.warn(f"fit(compile=True): torch.compile could not compile the step "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                          "running the compiled graph without it", RuntimeWarning, stacklevel=4)
            self._loss, self.engine = self._loss_impl, "compiled"
            loss = self._loss(flat, *noise)
        self._compiled_ok = True
        return loss

    def _raise_nonfinite(self, value):
        """Name the site: one reference evaluation at the same params finds the first non-finite log density."""
        svi = self.svi
        svi.num_steps = self.num_steps
        try:
            svi.evaluate_loss()
        except Exception:  # noqa: BLE001 - the diagnosis must not hide the NaN itself
            svi.loss.last_traces = None
        svi._raise_nonfinite(value)

    def evaluate_loss(self):
        """The loss at the current params, without a step (one compiled draw)."""
        flat = self.packed.flat
        with torch.no_grad():
            return float(self._loss_impl(flat, *self._noise(flat.device)))

    def close(self):
        """Give every packed param its own leaf again."""
        self.packed.unpack()


def site_log_prob(site):
    """A trace site's log density, summed and scaled as the ELBO counts it."""
    return log_prob_of(site).sum()


@contextlib.contextmanager
def _no_validation():
    """Distribution argument checks off inside a step: the reference set-up ran them once."""
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)


def _torch_compiled(fn, device):
    """``torch.compile(fn)``, with CUDA graphs on a GPU; or ``fn`` itself, with a warning, without torch.compile."""
    if not hasattr(torch, "compile"):
        warnings.warn("fit(compile=True): this torch has no torch.compile; the compiled graph runs eagerly",
                      RuntimeWarning, stacklevel=5)
        return fn
    mode = "reduce-overhead" if device.type == "cuda" else None  # reduce-overhead = CUDA graphs
    return torch.compile(fn, mode=mode, dynamic=False)


__all__ = ["COMPILE_OPTIONS", "CompiledStep", "Reference", "compiled_step"]
