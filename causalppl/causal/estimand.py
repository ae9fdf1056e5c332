"""Estimands as plain data: probabilities, products, sums and fractions.

An identified causal effect is a formula over the observational
distribution. The four node types are frozen dataclasses (hashable, equal by
value); ``str`` writes them the way the literature does, priming a summed
variable where it would clash with a free one:

>>> frontdoor = Sum({"m"}, Product((P({"m"}, {"x"}),
...                                 Sum({"x"}, Product((P({"x"}), P({"y"}, {"x", "m"})))))))
>>> print(frontdoor)
Σ_m P(m|x) Σ_x' P(x')P(y|m,x')
>>> sorted(frontdoor.free)
['x', 'y']

The smart constructors :func:`product`, :func:`marginal` and :func:`fraction`
simplify as they build, with rules that hold for any distribution:
summing a head variable out of the only factor that mentions it
(``Σ_y P(x,y|z) = P(x|z)``), the chain rule (``P(x|z)P(y|x,z) = P(x,y|z)``)
and cancelling a denominator factor against a numerator factor
(``P(x,y|z) / P(x|z) = P(y|x,z)``):

>>> print(marginal(P({"x", "y", "z"}), {"x", "z"}))
P(y)
>>> print(fraction(product(P({"w"}), P({"x"}, {"w"}), P({"y"}, {"x", "w"})), P({"w"})))
P(x,y|w)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from causalppl.causal.separators import sorted_nodes


class Expr:
    """Base class of the formula nodes; ``free`` is the set of free variables."""

    free: frozenset

    def __str__(self):
        return _render(self, {}, self.free)

    def __repr__(self):
        return f"{type(self).__name__}<{self}>"


@dataclass(frozen=True, repr=False)
class P(Expr):
    """The observational probability P(head | given)."""

    head: frozenset
    given: frozenset = frozenset()
    free: frozenset = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "head", frozenset(self.head))
        object.__setattr__(self, "given", frozenset(self.given))
        if self.head & self.given:
            raise ValueError(f"P(head | given): head and given share {sorted_nodes(self.head & self.given)}")
        object.__setattr__(self, "free", self.head | self.given)

    __str__ = Expr.__str__
    __repr__ = Expr.__repr__


@dataclass(frozen=True, repr=False)
class Product(Expr):
    """The product of `factors` (the empty product is 1)."""

    factors: tuple
    free: frozenset = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "factors", tuple(self.factors))
        object.__setattr__(self, "free", frozenset().union(*(f.free for f in self.factors)))

    __str__ = Expr.__str__
    __repr__ = Expr.__repr__


@dataclass(frozen=True, repr=False)
class Sum(Expr):
    """The sum of `body` over every value of the variables `over`."""

    over: frozenset
    body: Expr
    free: frozenset = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "over", frozenset(self.over))
        object.__setattr__(self, "free", self.body.free - self.over)

    __str__ = Expr.__str__
    __repr__ = Expr.__repr__


@dataclass(frozen=True, repr=False)
class Fraction(Expr):
    """`numerator` / `denominator` (0 / 0 counts as 0)."""

    numerator: Expr
    denominator: Expr
    free: frozenset = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "free", self.numerator.free | self.denominator.free)

    __str__ = Expr.__str__
    __repr__ = Expr.__repr__


ONE = Product(())


# ---------------------------------------------------------------------------
# smart constructors


def _factors(expr):
    return list(expr.factors) if isinstance(expr, Product) else [expr]


def product(*factors) -> Expr:
    """The product of `factors`, flattened, with chain-rule factors merged."""
    flat = [g for f in factors for g in _factors(f)]
    merged = True
    while merged:  # P(A|B) P(C|A,B) = P(A,C|B); each pass merges along chains
        merged = False
        by_given = {}
        for j, g in enumerate(flat):
            if isinstance(g, P):
                by_given.setdefault(g.given, []).append(j)
        for i, f in enumerate(flat):
            if not isinstance(f, P):
                continue
            for j in by_given.get(f.head | f.given, ()):
                if j != i and flat[j] is not None:
                    f = flat[i] = P(f.head | flat[j].head, f.given)
                    flat[j] = None
                    merged = True
        flat = [f for f in flat if f is not None]
    return flat[0] if len(flat) == 1 else Product(tuple(flat))


def marginal(expr, over) -> Expr:
    """Sum `expr` over the variables `over` (those it does not mention are ignored).

    Nested sums are merged when no variable is captured; a variable that only
    one probability mentions, in its head, is summed out of it; factors that
    do not mention a summed variable move out of the sum.
    """
    over = set(over) & expr.free
    if not over:
        return expr
    if isinstance(expr, Sum):
        return marginal(expr.body, over | expr.over)
    if isinstance(expr, P) and over <= expr.head:
        return P(expr.head - over, expr.given) if over < expr.head else ONE
    factors = _factors(expr)
    # absorb inner sums whose bound variables nothing else mentions
    mentioned = set(over).union(*(f.free for f in factors))
    todo, factors = factors, []
    while todo:
        f = todo.pop()
        if isinstance(f, Sum) and not f.over & mentioned:
            mentioned |= f.over
            over |= f.over
            todo.extend(_factors(f.body))
        else:
            factors.append(f)
    factors.reverse()
    # sum_v P(v, A | B) = P(A | B) when no other factor mentions v
    holders = {}
    for i, f in enumerate(factors):
        for v in f.free & over:
            holders.setdefault(v, set()).add(i)
    todo = sorted_nodes(over)
    while todo:
        v = todo.pop()
        if v not in over or len(holders.get(v, ())) != 1:
            continue
        (i,) = holders[v]
        f = factors[i]
        if not isinstance(f, P) or v not in f.head:
            continue
        over.discard(v)
        if f.head == {v}:
            factors[i] = None  # sum_v P(v|B) = 1: B may now be free to go too
            for g in f.given & over:
                holders[g].discard(i)
                todo.append(g)
        else:
            factors[i] = P(f.head - {v}, f.given)
    factors = [f for f in factors if f is not None]
    if not over:
        return product(*factors)
    inside = [f for f in factors if f.free & over]
    outside = [f for f in factors if not f.free & over]
    return product(*outside, Sum(frozenset(over), product(*inside)))


def fraction(numerator, denominator) -> Expr:
    """`numerator` / `denominator`, cancelling what the two share.

    A denominator factor P(C|B) cancels against a numerator factor P(A|B)
    with C within A, leaving P(A-C | B, C); equal factors cancel outright.
    """
    num, den = _factors(numerator), _factors(denominator)
    where = {}
    for i, n in enumerate(num):
        where.setdefault(n, []).append(i)
        if isinstance(n, P):
            where.setdefault(("given", n.given), []).append(i)
    left = []
    for d in den:
        exact = [i for i in where.get(d, ()) if num[i] == d]
        if exact:
            num[exact[0]] = None
            where[d].remove(exact[0])
            continue
        if isinstance(d, P):
            wider = [i for i in where.get(("given", d.given), ())
                     if num[i] is not None and d.head < num[i].head]
            if wider:
                n = num[wider[0]]
                num[wider[0]] = P(n.head - d.head, n.given | d.head)
                continue
        left.append(d)
    num = [n for n in num if n is not None]
    top = product(*num) if num else ONE
    if not left:
        return top
    return Fraction(top, product(*left))


# ---------------------------------------------------------------------------
# writing


def _name(v, names):
    return names.get(v, str(v))


def _vars(nodes, names):
    return ",".join(_name(v, names) for v in sorted_nodes(nodes))


def _render(expr, names, scope):
    """Text of `expr`; `names` maps renamed bound variables, `scope` holds
    the variables visible around it (a sum over one of them primes it)."""
    if isinstance(expr, P):
        given = f"|{_vars(expr.given, names)}" if expr.given else ""
        return f"P({_vars(expr.head, names)}{given})"
    if isinstance(expr, Product):
        if not expr.factors:
            return "1"
        parts = []
        for i, f in enumerate(expr.factors):
            text = _render(f, names, scope)
            last = i == len(expr.factors) - 1
            if isinstance(f, Fraction) or (isinstance(f, Sum) and not last):
                text = f"({text})"
            parts.append(text)
        # a sum reads to the end of the product, so a trailing one gets a space
        return "".join(p if i == 0 or not p.startswith("Σ") else " " + p for i, p in enumerate(parts))
    if isinstance(expr, Sum):
        names = dict(names)
        taken = {_name(v, names) for v in scope}
        for v in sorted_nodes(expr.over):
            shown = str(v)
            while shown in taken:
                shown += "'"
            names[v] = shown
            taken.add(shown)
        shown = [names[v] for v in sorted_nodes(expr.over)]
        sub = shown[0] if len(shown) == 1 else "{" + ",".join(shown) + "}"
        return f"Σ_{sub} {_render(expr.body, names, scope | expr.over)}"
    if isinstance(expr, Fraction):
        return f"{_render(expr.numerator, names, scope)} / {_render(expr.denominator, names, scope)}"
    raise TypeError(f"not an estimand node: {expr!r}")
