"""Graph-first structural causal models: SCMs, surgery, lowering, expressions, DOT."""

from causalppl.graph.dot import read_dot, to_dot
from causalppl.graph.draw import GraphvizNotFound, draw
from causalppl.graph.expr import Expression, ExpressionError, parse_expression
from causalppl.graph.formats import read_graph, to_bif, to_dagitty, to_gml, to_xmlbif
from causalppl.graph.lower import LoweredModel, MechanismError
from causalppl.graph.mechanism import Mechanism
from causalppl.graph.scm import SCM

__all__ = ["Expression", "ExpressionError", "LoweredModel", "Mechanism", "MechanismError", "SCM",
           "parse_expression"]
__all__ += ["GraphvizNotFound", "draw", "read_dot", "to_dot", "read_graph", "to_bif", "to_dagitty", "to_gml",
            "to_xmlbif"]
