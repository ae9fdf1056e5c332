"""Safe expression strings for SCM mechanisms, such as ``"Normal(2*x + 1, 0.5)"``.

Mechanism strings come from users and from DOT files, so they are parsed with
:func:`ast.parse` and checked against a whitelist of syntax, names and
callables -- never passed to ``eval``/``exec``. The checked tree is compiled
once into nested Python closures, so calling an :class:`Expression` (say, on
every SVI step) costs the torch math plus a few Python calls.

>>> import torch
>>> expr = parse_expression("Normal(2*x + 1, scale)")
>>> expr.names
('x', 'scale')
>>> d = expr(x=torch.tensor(3.0), scale=0.5)
>>> float(d.loc), float(d.scale)
(7.0, 0.5)
>>> parse_expression("x.__class__")
Traceback (most recent call last):
...
causalppl.graph.expr.ExpressionError: expression 'x.__class__' (column 2): attribute access is not allowed
"""

import ast
import difflib
import functools
import itertools
import keyword as _keyword
import math
import operator
import re
import unicodedata

import torch
import torch.distributions
import torch.nn.functional

MAX_LENGTH = 10_000
MAX_DEPTH = 100  # the closures recurse at call time, so keep well below the recursion limit

CONSTANTS = {"pi": math.pi, "e": math.e}


class ExpressionError(ValueError):
    """An expression string that cannot be parsed, is not allowed, or failed to evaluate."""


def _pow(base, exponent):
    # int ** int is exact in Python, so `9**9**9` would run for hours; floats overflow at once.
    if isinstance(base, (int, float)) and isinstance(exponent, (int, float)):
        result = float(base) ** exponent
        return math.nan if isinstance(result, complex) else result  # as torch.pow does
    return base**exponent


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: _pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}

# Constructs refused with a message that says what to write instead.
_REFUSED = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts (indexing) are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.IfExp: "if-expressions are not allowed; use where(condition, a, b)",
    ast.BoolOp: "'and'/'or' are not allowed; use where() or multiply conditions",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred arguments (*args) are not allowed",
    ast.Set: "set literals are not allowed",
    ast.Dict: "dict literals are not allowed",
}


def _where(condition, input, other):
    # Bernoulli samples are float 0/1, so accept any numeric condition.
    if condition.dtype != torch.bool:
        condition = condition != 0
    return torch.where(condition, input, other)


# Torch functions: name -> (function, parameters that must be tensors, by position or keyword).
_FUNCTIONS = {name: (getattr(torch, name), ("input",)) for name in (
    "exp", "log", "log1p", "expm1", "sigmoid", "logit", "tanh", "abs", "sqrt", "relu",
    "sin", "cos", "floor", "ceil", "round", "sum", "mean", "sign", "erf", "square")}
_FUNCTIONS.update({
    "softplus": (torch.nn.functional.softplus, ("input",)),
    "clamp": (torch.clamp, ("input", "min", "max")),
    "minimum": (torch.minimum, ("input", "other")),
    "maximum": (torch.maximum, ("input", "other")),
    "pow": (torch.pow, ("input", "exponent")),
    "where": (_where, ("condition", "input", "other")),
    "tensor": (lambda data: data, ("data",)),  # _as_tensor_arg does the work
})


@functools.cache
def _distributions():
    """Distribution constructors by name (built on first use: causalppl.distributions may import us)."""
    found = {}
    for name in torch.distributions.__all__:
        obj = getattr(torch.distributions, name)
        if isinstance(obj, type) and issubclass(obj, torch.distributions.Distribution):
            found[name] = obj
    del found["Distribution"], found["ExponentialFamily"]  # abstract
    try:
        from causalppl.distributions import Delta
    except ImportError:
        pass
    else:
        found["Delta"] = Delta
    return found


@functools.cache
def _callable_names():
    return frozenset(_FUNCTIONS) | frozenset(_distributions())


def expression_meaning(name):
    """What ``name`` already means in an expression (a constant, a function, a distribution), or ``None``.

    Node and input names may not be one of these (see ``SCM.add``): an
    expression would read the name as the constant or the function.

    >>> expression_meaning("e"), expression_meaning("exp"), expression_meaning("weight")
    ('the constant 2.718281828459045', 'a function', None)
    """
    if name in CONSTANTS:
        return f"the constant {CONSTANTS[name]}"
    if name in _distributions():
        return "a distribution"
    if name in _FUNCTIONS:
        return "a function"
    return None


def _check_normalised(text):
    """Refuse text that Unicode NFKC-normalises into other text: Python's parser would read ``ｘ`` as ``x``."""
    if text.isascii() or unicodedata.normalize("NFKC", text) == text:
        return
    for index, char in enumerate(text):
        normal = unicodedata.normalize("NFKC", char)
        if normal != char:
            line = text.count("\n", 0, index) + 1
            column = index - (text.rfind("\n", 0, index) + 1) + 1
            raise ExpressionError(
                f"{_where_text(text, line, column)}: character {char!r} (U+{ord(char):04X}) is not allowed: "
                f"Python would read it as {normal!r}; write {normal!r}")
    raise ExpressionError(f"{_where_text(text, 1, None)}: Unicode normalises this text into other text "
                          f"({unicodedata.normalize('NFKC', text)!r}); write that instead")


def _reference(values, env):
    """The first tensor among call arguments, then env values: numbers follow its device and dtype."""
    for value in itertools.chain(values, env.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _number(value, ref):
    if ref is None:
        return torch.as_tensor(float(value))
    dtype = ref.dtype if ref.is_floating_point() else None
    return torch.as_tensor(float(value), dtype=dtype, device=ref.device)


def _contains_tensor(data):
    if isinstance(data, (list, tuple)):
        return any(_contains_tensor(item) for item in data)
    return isinstance(data, torch.Tensor)


def _stack(data, ref):
    """Stack a nested list holding tensors; inner lists become the rightmost dimensions."""
    if not isinstance(data, (list, tuple)):
        return (data if isinstance(data, torch.Tensor) else _number(data, ref)), 0
    if not data:
        raise ValueError("cannot mix an empty list with tensors")
    parts = [_stack(item, ref) for item in data]
    depth = parts[0][1]
    if any(d != depth for _, d in parts):
        raise ValueError("nested lists of unequal depth")
    tensors = torch.broadcast_tensors(*(t for t, _ in parts))
    return torch.stack(tensors, dim=-(depth + 1)), depth + 1


def _to_tensor(data, ref):
    """``tensor(data)``: numbers become float (Categorical probs given as ints too)."""
    if isinstance(data, torch.Tensor):
        return data
    if _contains_tensor(data):
        return _stack(data, ref)[0]
    floating = ref is not None and ref.is_floating_point()
    return torch.as_tensor(data, dtype=ref.dtype if floating else torch.get_default_dtype(),
                           device=None if ref is None else ref.device)


class _Compiler:
    """Checks an ast against the whitelist and turns each node into a closure ``f(env)``."""

    def __init__(self, text, shift, allow_slots=False):
        self.text = text
        self.allow_slots = allow_slots  # a template's variables _v0, _v1, ...
        self.shift = shift  # leading blanks stripped from line 1 before parsing
        self.names = []  # (line, column, name) of each free variable
        self.depth = 0

    def position(self, node, col_offset=None):
        """``expression '...' (column N)`` for a node."""
        col = node.col_offset if col_offset is None else col_offset
        line = self.text.split("\n")[node.lineno - 1]
        shift = self.shift if node.lineno == 1 else 0
        # ast offsets count UTF-8 bytes; users count characters.
        column = len(line[shift:].encode()[:col].decode(errors="replace")) + shift + 1
        return _where_text(self.text, node.lineno, column)

    def error(self, node, message, col_offset=None):
        return ExpressionError(f"{self.position(node, col_offset)}: {message}")

    def compile(self, node, tuples=False, lists=False):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(node, f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        try:
            return self._compile(node, tuples, lists)
        finally:
            self.depth -= 1

    def _compile(self, node, tuples, lists):
        kind = type(node)
        if kind is ast.Constant:
            return self.constant(node)
        if kind is ast.Name:
            return self.name(node)
        if kind is ast.BinOp and type(node.op) in _BINARY:
            op, left, right = _BINARY[type(node.op)], self.compile(node.left), self.compile(node.right)
            return lambda env: op(left(env), right(env))
        if kind is ast.UnaryOp and type(node.op) in _UNARY:
            op, operand = _UNARY[type(node.op)], self.compile(node.operand)
            return lambda env: op(operand(env))
        if kind is ast.Compare:
            return self.compare(node)
        if kind is ast.Call:
            return self.call(node)
        if kind is ast.Tuple and tuples:
            items = [self.compile(item, tuples, lists) for item in node.elts]
            return lambda env: tuple(item(env) for item in items)
        if kind is ast.List and lists:
            items = [self.compile(item, tuples, lists) for item in node.elts]
            return lambda env: [item(env) for item in items]
        raise self.refusal(node)

    def refusal(self, node):
        kind = type(node)
        if kind is ast.Attribute:  # point at the dot, as in `x.__class__`
            return self.error(node, _REFUSED[kind], self.find(node, ".", node.value.end_col_offset))
        if kind is ast.Subscript:
            return self.error(node, _REFUSED[kind], self.find(node, "[", node.value.end_col_offset))
        if kind in _REFUSED:
            return self.error(node, _REFUSED[kind])
        if kind is ast.UnaryOp and isinstance(node.op, ast.Not):
            return self.error(node, "'not' is not allowed; use where() or 1 - condition")
        if kind in (ast.BinOp, ast.UnaryOp):
            symbol = type(node.op).__name__
            return self.error(node, f"operator {symbol} is not allowed; use + - * / // % **")
        if kind is ast.List:
            return self.error(node, "lists are only allowed as function arguments, e.g. tensor([...])")
        if kind is ast.Tuple:
            return self.error(node, "tuples are only allowed as function arguments")
        return self.error(node, f"{kind.__name__} is not allowed")

    def find(self, node, char, start):
        """Byte offset of ``char`` at or after ``start`` on the node's line (ast has no position for it)."""
        if node.value.end_lineno != node.lineno:
            return node.col_offset
        line = self.text.split("\n")[node.lineno - 1]
        line = line[self.shift:] if node.lineno == 1 else line
        found = line.encode().find(char.encode(), start)
        return node.col_offset if found < 0 else found

    def constant(self, node):
        value = node.value
        if value is None:
            raise self.error(node, "None is not allowed")
        if isinstance(value, str):
            raise self.error(node, "strings are not allowed")
        if isinstance(value, bytes):
            raise self.error(node, "bytes are not allowed")
        if not isinstance(value, (bool, int, float)):
            raise self.error(node, f"{type(value).__name__} literals are not allowed")
        return lambda env: value

    def name(self, node):
        name = node.id
        if name in CONSTANTS:
            value = CONSTANTS[name]
            return lambda env: value
        if name in _callable_names():
            raise self.error(node, f"'{name}' is a function; call it, as in {name}(...)")
        if name.startswith("_") and not (self.allow_slots and name.startswith(_SLOT)):
            raise self.error(node, f"name '{name}' is not allowed: names may not start with '_'")
        self.names.append((node.lineno, node.col_offset, name))
        return lambda env: env[name]  # Expression.__call__ checks every name is given

    def compare(self, node):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise self.error(node, f"comparison {type(op).__name__} is not allowed; use < <= > >= == !=")
        ops = [_COMPARE[type(op)] for op in node.ops]
        operands = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]
        if len(ops) == 1:
            op, left, right = ops[0], operands[0], operands[1]
            return lambda env: op(left(env), right(env))

        def chain(env):  # a < b < c  ==  (a < b) & (b < c), evaluating b once
            left = operands[0](env)
            result = None
            for op, operand in zip(ops, operands[1:], strict=True):
                right = operand(env)
                test = op(left, right)
                result = test if result is None else result & test
                left = right
            return result
        return chain

    def call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute):
            dot = self.find(func, ".", func.value.end_col_offset)
            raise self.error(func, "attribute access is not allowed; call a function by its name, "
                                   "e.g. exp(x), not torch.exp(x)", dot)
        if not isinstance(func, ast.Name):
            raise self.error(func, "only functions called by name are allowed, e.g. exp(x)")
        name = func.id
        distribution = _distributions().get(name)
        if distribution is None and name not in _FUNCTIONS:
            close = difflib.get_close_matches(name, sorted(_callable_names()), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise self.error(func, f"'{name}' is not an allowed function or distribution{hint}")
        if name == "tensor" and (len(node.args) != 1 or node.keywords):
            raise self.error(func, "tensor() takes exactly one argument, a number or a list")
        args = [self.compile(arg, tuples=True, lists=True) for arg in node.args]
        kwargs = {}
        for given in node.keywords:
            if given.arg is None:
                raise self.error(given, "**kwargs is not allowed")
            if given.arg.startswith("_"):
                raise self.error(given, f"keyword '{given.arg}' is not allowed: it starts with '_'")
            if given.arg in kwargs:
                raise self.error(given, f"keyword '{given.arg}' is repeated")
            kwargs[given.arg] = self.compile(given.value, tuples=True, lists=True)

        # Lists become tensors; so do numbers passed where a torch function needs a tensor.
        target, tensor_params = _FUNCTIONS.get(name) or (distribution, ())
        where = self.position(func)

        def evaluate(env):
            values = [arg(env) for arg in args]
            keywords = {key: arg(env) for key, arg in kwargs.items()}
            try:
                ref = _reference(itertools.chain(values, keywords.values()), env)
                values = [_as_tensor_arg(v, ref) if i < len(tensor_params) or isinstance(v, list) else v
                          for i, v in enumerate(values)]
                keywords = {k: _as_tensor_arg(v, ref) if k in tensor_params or isinstance(v, list) else v
                            for k, v in keywords.items()}
                return target(*values, **keywords)
            except ExpressionError:
                raise
            except Exception as err:
                raise ExpressionError(f"{where}: {name}(...) failed: {type(err).__name__}: {err}") from err
        return evaluate


def _as_tensor_arg(value, ref):
    if isinstance(value, (list, tuple)):
        return _to_tensor(value, ref)
    if isinstance(value, (bool, int, float)):
        return _number(value, ref)
    return value


def _where_text(text, line, column):
    shown = text if len(text) <= 200 else text[:200] + "..."
    if column is None:
        return f"expression {shown!r}"
    position = f"line {line}, column {column}" if "\n" in text else f"column {column}"
    return f"expression {shown!r} ({position})"


# -- templates ---------------------------------------------------------------------
# Large files hold thousands of mechanisms that differ only in their variables' names
# ("Normal(0.5*x12 + x7, 1)", "Normal(0.5*x40 + x3, 1)"). Each is compiled as its
# template, with the variables renamed by order of appearance ("Normal(0.5*_v0 + _v1, 1)"),
# and a template is parsed and checked once. Anything unusual (non-ASCII text, quotes,
# names with a leading '_', a template that does not compile to exactly its slots) takes
# the full path, so errors always come from the text itself.

_TEMPLATE_TOKEN = re.compile(r"""
    (?P<number>(?:[0-9]|\.[0-9])(?:[\w.]|(?<=[eE])[+-])*)
  | (?P<keyword>[A-Za-z_][A-Za-z_0-9]*(?=\s*=(?!=)))
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
""", re.VERBOSE)
_SLOT = "_v"
_PYTHON_WORDS = frozenset(_keyword.kwlist) | frozenset(_keyword.softkwlist)


@functools.cache
def _kept_words():
    """Words a template keeps: Python's keywords and the callables' names."""
    return _PYTHON_WORDS | _callable_names()


def _template(text):
    """``(template, variables)``, or None when ``text`` should take the full path."""
    if not text.isascii() or "'" in text or '"' in text or "\\" in text:
        return None
    slots = {}
    kept = _kept_words()

    def rename(found):
        word = found.group("name")
        if word is None or word in CONSTANTS or word in kept:
            return found.group()
        if word[0] == "_":
            slots[None] = None  # a leading '_': refused by the full path
            return word
        return slots.setdefault(word, f"{_SLOT}{len(slots)}")

    template = _TEMPLATE_TOKEN.sub(rename, text)
    if None in slots:
        return None
    return template, tuple(slots)


@functools.lru_cache(maxsize=4096)
def _compiled_template(template, count):
    """The evaluator of ``template`` (variables ``_v0`` ... in order), or None if it does not check out."""
    try:
        evaluate, names = _compile_text(template, allow_slots=True)
    except ExpressionError:
        return None
    if names != tuple(f"{_SLOT}{k}" for k in range(count)):
        return None
    return evaluate


def _compile_text(text, allow_slots=False):
    """``(evaluate, names)`` of checked ``text`` (raises :class:`ExpressionError`)."""
    body = text.lstrip(" \t")  # a leading blank is an IndentationError to ast
    compiler = _Compiler(text, len(text) - len(body), allow_slots)
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as err:
        line = err.lineno or 1
        column = max(err.offset or 1, 1) + (compiler.shift if line == 1 else 0)
        raise ExpressionError(f"{_where_text(text, line, column)}: syntax error: {err.msg}") from None
    except (MemoryError, RecursionError):  # the parser's own stack, e.g. 5,000 unary minuses
        raise ExpressionError(f"{_where_text(text, 1, None)}: nested too deeply to parse") from None
    except ValueError as err:  # e.g. null bytes
        raise ExpressionError(f"{_where_text(text, 1, None)}: cannot parse: {err}") from None
    evaluate = compiler.compile(tree.body, tuples=True)
    ordered = sorted(compiler.names, key=lambda found: found[:2])
    return evaluate, tuple(dict.fromkeys(name for _, _, name in ordered))


class Expression:
    """A checked, compiled expression; call it with the values of its free ``names``.

    ``text`` is the original string. Errors (parse or evaluation) are :class:`ExpressionError`.

    >>> Expression("sigmoid(0.0) + pi")(), Expression("where(rain > 0.5, 0.9, 0.1)").names
    (tensor(3.6416), ('rain',))
    """

    text: str
    names: tuple[str, ...]

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"an expression must be a str, got {type(text).__name__}")
        self.text = text
        if not text.strip():
            raise ExpressionError(f"expression {text!r}: the expression is empty")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"{_where_text(text, 1, None)}: longer than {MAX_LENGTH} characters "
                                  f"({len(text)})")
        _check_normalised(text)
        self._slots = None
        found = _template(text)
        if found is not None:
            template, variables = found
            evaluate = _compiled_template(template, len(variables))
            if evaluate is not None:
                self._evaluate, self.names = evaluate, variables
                self._slots = tuple((f"{_SLOT}{k}", name) for k, name in enumerate(variables))
                return
        self._evaluate, self.names = _compile_text(text)

    def __call__(self, /, **env) -> object:
        for name in self.names:
            if name not in env:
                raise ExpressionError(f"{_where_text(self.text, 1, None)}: no value given for '{name}' "
                                      f"(given: {', '.join(sorted(env)) or 'nothing'})")
        if self._slots is not None:
            try:
                return self._evaluate({slot: env[name] for slot, name in self._slots})
            except Exception:
                pass  # a template's messages would show the template: take the full path for them
            self._evaluate, _ = _compile_text(self.text)
            self._slots = None
        try:
            return self._evaluate(env)
        except ExpressionError:
            raise
        except Exception as err:
            where = _where_text(self.text, 1, None)
            raise ExpressionError(f"{where}: evaluation failed: {type(err).__name__}: {err}") from err

    def __repr__(self):
        return f"Expression({self.text!r})"

    def __eq__(self, other):
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def __reduce__(self):  # closures do not pickle; the text does
        return Expression, (self.text,)


def returns_distribution(expr: Expression) -> bool:
    """Whether ``expr`` is a call of a distribution, such as ``Bernoulli(0.3)`` (checked on its syntax).

    >>> returns_distribution(parse_expression("Bernoulli(0.3)")), returns_distribution(parse_expression("x + 1"))
    (True, False)
    """
    try:
        body = ast.parse(expr.text.strip(), mode="eval").body
    except SyntaxError:
        return False
    return isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id in _distributions()


def parse_expression(text: str) -> Expression:
    """Parse and check ``text`` once; raise :class:`ExpressionError` if it is not allowed.

    >>> parse_expression("Bernoulli(probs=sigmoid(0.3*z - 1))").names
    ('z',)
    >>> parse_expression("1 if x else 2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    causalppl.graph.expr.ExpressionError: ... (column 1): if-expressions are not allowed; use where(...)
    """
    return Expression(text)
