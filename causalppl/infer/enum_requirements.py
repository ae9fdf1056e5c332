"""A warning for models whose enumeration would break a plate's independence (Pyro's
``check_traceenum_requirements``).

TraceEnum_ELBO sums enumerated sites out plate element by plate element, so a
site *outside* a plate must not depend on an enumerated site *inside* it.
Dependencies cannot be seen, but order can: a site sampled after enumerated
sites of a deeper vectorised plate (and not in an independent iteration of a
sequential plate) is warned about, naming the sites and the plates.

>>> import warnings, torch, causalppl as cp
>>> def model():
...     with cp.plate("rows", 3):
...         x = cp.sample("x", cp.dist.Bernoulli(0.5).expand([3]), infer={"enumerate": "parallel"})
...     cp.sample("y", cp.dist.Normal(0.0, 1.0))
>>> tr = cp.trace(model).get_trace()
>>> with warnings.catch_warnings(record=True) as w:
...     warnings.simplefilter("always")
...     check_traceenum_requirements(tr, tr)
>>> print(str(w[0].message).splitlines()[0])
at model site "y", possibly invalid dependency.
"""

import warnings


def _sequential_counters(site):
    return {frame.name: frame.counter for frame in site["cond_indep_stack"] if not frame.vectorized}


def _independent(counters, other):
    """Two sites are independent if some sequential plate they share is at different iterations."""
    return any(name in other and other[name] != count for name, count in counters.items())


def check_traceenum_requirements(model_trace, guide_trace):
    """Warn (``RuntimeWarning``) at each site that follows enumerated guide sites of a strictly deeper plate set."""
    enumerated = {name for name, site in guide_trace.nodes.items()
                  if site["type"] == "sample" and site["infer"].get("enumerate")}
    for role, tr in (("model", model_trace), ("guide", guide_trace)):
        counters = {}
        by_context = {}
        for name, site in tr.nodes.items():
            if site["type"] != "sample":
                continue
            counter = _sequential_counters(site)
            context = frozenset(frame for frame in site["cond_indep_stack"] if frame.vectorized)
            for deeper, names in by_context.items():
                if not context < deeper:
                    continue
                before = sorted(n for n in names if not _independent(counter, counters[n]))
                if before:
                    plates = sorted(frame.name for frame in deeper - context)
                    warnings.warn(
                        f'at {role} site "{name}", possibly invalid dependency.\n'
                        f'  Expected site "{name}" to precede sites "{", ".join(before)}"\n'
                        f'  to avoid breaking independence of plates "{", ".join(plates)}"',
                        RuntimeWarning, stacklevel=4)
            counters[name] = counter
            if name in enumerated:
                by_context.setdefault(context, set()).add(name)


__all__ = ["check_traceenum_requirements"]
