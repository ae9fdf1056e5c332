"""Tests for causalppl.causal.identify: known answers on textbook graphs,
errors by type and message, and the set listings against brute force."""

import itertools
import random

import networkx as nx
import pytest

from causalppl.causal.identify import (
    Check,
    Identification,
    backdoor_sets,
    check_backdoor,
    check_frontdoor,
    check_instrument,
    d_separated,
    frontdoor_sets,
    identify,
    instruments,
)


def dag(*edges, latent=()):
    G = nx.DiGraph()
    for edge in edges:
        nx.add_path(G, edge.split())
    for n in latent:
        G.nodes[n]["latent"] = True
    return G


@pytest.fixture
def m_bias():
    # X <- A -> M <- B -> Y, X -> Y
    return dag("A X", "A M", "B M", "B Y", "X Y")


@pytest.fixture
def smoking():
    return dag("U smoking", "U cancer", "smoking tar cancer", latent=["U"])


@pytest.fixture
def confounded():
    return dag("Z X", "Z Y", "X Y")


@pytest.fixture
def mediated():
    return dag("X M Y", "Z X", "Z Y")


@pytest.fixture
def iv():
    # W affects Y directly; U is a latent confounder of X and Y.
    return dag("Z X Y", "U X", "U Y", "W Y", latent=["U"])


class StandIn:
    """An object with a .graph DiGraph, like an SCM."""

    def __init__(self, graph):
        self.graph = graph


# --- d-separation -----------------------------------------------------------


def test_d_separated_chain_fork_collider():
    chain = dag("a b c")
    assert not d_separated(chain, "a", "c")
    assert d_separated(chain, "a", "c", "b")
    fork = dag("b a", "b c")
    assert not d_separated(fork, "a", "c")
    assert d_separated(fork, {"a"}, ["c"], {"b"})
    collider = dag("a b", "c b", "b d")
    assert d_separated(collider, "a", "c")
    assert not d_separated(collider, "a", "c", "b")
    assert not d_separated(collider, "a", "c", "d")  # a descendant of the collider


def test_d_separated_sets_and_empty():
    G = dag("a b c", "d c")
    assert d_separated(G, {"a", "d"}, set())
    assert not d_separated(G, {"a", "d"}, "c")
    assert d_separated(G, ["a", "b"], "d")


def test_d_separated_integer_nodes():
    G = nx.DiGraph([(0, 1), (1, 2)])
    assert d_separated(G, 0, 2, 1)
    assert not d_separated(G, 0, 2)


# --- backdoor ---------------------------------------------------------------


def test_m_bias(m_bias):
    assert check_backdoor(m_bias, "X", "Y", set())
    bad = check_backdoor(m_bias, "X", "Y", {"M"})
    assert not bad
    assert "M" in bad.reason and "collider" in bad.reason
    assert "X <- A -> M <- B -> Y" in bad.reason
    assert check_backdoor(m_bias, "X", "Y", {"M", "A"})
    assert check_backdoor(m_bias, "X", "Y", {"M", "B"})
    assert backdoor_sets(m_bias, "X", "Y") == [frozenset()]
    every = backdoor_sets(m_bias, "X", "Y", minimal=False)
    assert frozenset({"M"}) not in every
    assert set(every) == {frozenset(), frozenset("A"), frozenset("B"), frozenset("AB"),
                          frozenset("AM"), frozenset("BM"), frozenset("ABM")}


def test_descendant_of_collider_opens_path(m_bias):
    m_bias.add_edge("M", "D")
    check = check_backdoor(m_bias, "X", "Y", {"D"})
    assert not check
    assert "'D', a descendant of collider 'M'" in check.reason


def test_confounded(confounded):
    assert backdoor_sets(confounded, "X", "Y") == [frozenset({"Z"})]
    empty = check_backdoor(confounded, "X", "Y", ())
    assert not empty
    assert "X <- Z -> Y" in empty.reason
    assert "Z" in empty.reason
    good = check_backdoor(confounded, "X", "Y", "Z")
    assert good and good.ok and "blocks every backdoor path" in good.reason


def test_mediator_never_in_backdoor_sets(mediated):
    for minimal in (True, False):
        found = backdoor_sets(mediated, "X", "Y", minimal=minimal)
        assert found
        assert all("M" not in s for s in found)
    assert backdoor_sets(mediated, "X", "Y") == [frozenset({"Z"})]
    check = check_backdoor(mediated, "X", "Y", {"M"})
    assert not check
    assert "descendant" in check.reason and "'M'" in check.reason
    assert check.reason.startswith("{'M'} contains 'M', a descendant of treatment 'X'")
    assert not check_backdoor(mediated, "X", "Y", {"M", "Z"})


def test_kidney_stones():
    G = dag("size treatment", "size recovery", "treatment recovery")
    assert backdoor_sets(G, "treatment", "recovery") == [frozenset({"size"})]
    assert backdoor_sets(G, "treatment", "recovery", minimal=False) == [frozenset({"size"})]
    result = identify(G, "treatment", "recovery")
    assert result.estimand() == (
        "P(recovery | do(treatment)) = sum_{size} P(recovery | treatment, size) P(size)")


def test_no_confounding_gives_empty_set():
    G = dag("x y")
    assert backdoor_sets(G, "x", "y") == [frozenset()]
    assert identify(G, "x", "y").estimand() == "P(y | do(x)) = P(y | x)"


def test_several_minimal_sets_sorted():
    # x <- a -> b -> y and x <- c <- d -> y
    G = dag("a x", "a b y", "d c x", "d y", "x y")
    assert backdoor_sets(G, "x", "y") == [
        frozenset("ac"), frozenset("ad"), frozenset("bc"), frozenset("bd")]


def test_latent_node_in_adjustment_set_fails_the_check(smoking):
    check = check_backdoor(smoking, "smoking", "cancer", {"U"})
    assert not check
    assert "'U'" in check.reason and "latent" in check.reason
    G = dag("Z X", "Z Y", "X Y")
    check = check_backdoor(G, "X", "Y", {"Z"}, latent=["Z"])
    assert not check and "'Z'" in check.reason
    assert backdoor_sets(G, "X", "Y", latent=["Z"]) == []


def test_set_treatment():
    G = dag("z x1 y", "z x2 y", "z y")
    assert check_backdoor(G, {"x1", "x2"}, "y", {"z"})
    assert backdoor_sets(G, ["x1", "x2"], "y") == [frozenset({"z"})]


def test_all_sets_limit():
    G = nx.DiGraph([(f"c{i}", "x") for i in range(16)] + [("x", "y")])
    with pytest.raises(ValueError, match="16 candidate nodes"):
        backdoor_sets(G, "x", "y", minimal=False)
    assert backdoor_sets(G, "x", "y") == [frozenset()]


def test_huge_listings_are_cut_short():
    # 13 gadgets x <- p <- {q, r} -> y: block each with {p} or {q, r}, so
    # 2**13 minimal sets, the smallest being all the p's.
    G = nx.DiGraph([("x", "y")])
    for i in range(13):
        G.add_edges_from([(f"p{i}", "x"), (f"q{i}", f"p{i}"), (f"r{i}", f"p{i}"),
                          (f"q{i}", "y"), (f"r{i}", "y")])
    with pytest.raises(ValueError, match="more than 5000 minimal backdoor sets"):
        backdoor_sets(G, "x", "y")
    result = identify(G, "x", "y")
    assert len(result.backdoor) == 50
    assert result.backdoor[0] == frozenset(f"p{i}" for i in range(13))
    assert all(check_backdoor(G, "x", "y", s) for s in result.backdoor)
    assert "more than 50 minimal backdoor sets" in str(result)


# --- frontdoor --------------------------------------------------------------


def test_smoking_tar_cancer(smoking):
    assert backdoor_sets(smoking, "smoking", "cancer") == []
    assert check_frontdoor(smoking, "smoking", "cancer", {"tar"})
    assert frontdoor_sets(smoking, "smoking", "cancer") == [frozenset({"tar"})]
    assert frontdoor_sets(smoking, "smoking", "cancer", minimal=False) == [frozenset({"tar"})]
    result = identify(smoking, "smoking", "cancer")
    assert isinstance(result, Identification)
    assert result.identifiable
    assert result.backdoor == [] and result.frontdoor == [frozenset({"tar"})]
    assert "tar" in result.estimand()
    assert result.estimand() == ("P(cancer | do(smoking)) = sum_{tar} P(tar | smoking) "
                                 "sum_{smoking'} P(cancer | smoking', tar) P(smoking')")
    report = str(result)
    assert "frontdoor" in report and "{'tar'}" in report and "smoking" in report


def test_frontdoor_failures(smoking):
    # (i): the empty set intercepts nothing
    check = check_frontdoor(smoking, "smoking", "cancer", set())
    assert not check and "smoking -> tar -> cancer" in check.reason
    # (ii): a confounder of smoking and tar
    G = smoking.copy()
    G.add_edges_from([("V", "smoking"), ("V", "tar")])
    check = check_frontdoor(G, "smoking", "cancer", {"tar"})
    assert not check and "smoking <- V -> tar" in check.reason
    # (iii): a confounder of tar and cancer that smoking does not block
    G = smoking.copy()
    G.add_edges_from([("V", "tar"), ("V", "cancer")])
    check = check_frontdoor(G, "smoking", "cancer", {"tar"}, latent={"V"})
    assert not check and "tar <- V -> cancer" in check.reason
    assert frontdoor_sets(G, "smoking", "cancer", latent={"V"}) == []
    # latent mediator
    check = check_frontdoor(smoking, "smoking", "cancer", {"tar"}, latent={"tar"})
    assert not check and "'tar'" in check.reason and "latent" in check.reason


def test_frontdoor_needs_a_non_descendant():
    # M alone leaves M <- N -> Y open; {M, N} is a frontdoor set
    G = dag("X M Y", "N M", "N Y")
    assert not check_frontdoor(G, "X", "Y", {"M"})
    assert frontdoor_sets(G, "X", "Y") == [frozenset({"M", "N"})]


def test_no_directed_path_means_no_effect():
    G = dag("y x", "u x", "u y", latent=["u"])
    assert backdoor_sets(G, "x", "y") == []
    assert frontdoor_sets(G, "x", "y") == [frozenset()]
    assert identify(G, "x", "y").estimand() == "P(y | do(x)) = P(y)"


# --- instruments ------------------------------------------------------------


def test_instrumental_variable(iv):
    assert check_instrument(iv, "Z", "X", "Y")
    assert not check_instrument(iv, "W", "X", "Y")  # affects Y directly
    assert "not relevant" in check_instrument(iv, "W", "X", "Y").reason
    assert instruments(iv, "X", "Y") == ["Z"]
    assert backdoor_sets(iv, "X", "Y") == []
    result = identify(iv, "X", "Y")
    assert not result.identifiable
    assert result.instruments == ["Z"]
    assert result.estimand() == "not identifiable by backdoor/frontdoor adjustment"
    assert "instruments" in str(result) and "'Z'" in str(result)


def test_instrument_exclusion_and_conditioning():
    # Z also reaches Y through C; conditioning on C restores exclusion.
    G = dag("Z X Y", "Z C Y", "U X", "U Y", latent=["U"])
    check = check_instrument(G, "Z", "X", "Y")
    assert not check and "Z -> C -> Y" in check.reason and "exclusion" in check.reason
    assert check_instrument(G, "Z", "X", "Y", conditioning={"C"})
    assert instruments(G, "X", "Y") == []
    # conditioning on a descendant of the treatment is not allowed
    G.add_edge("X", "D")
    check = check_instrument(G, "Z", "X", "Y", conditioning={"C", "D"})
    assert not check and "'D', a descendant of treatment 'X'" in check.reason
    # a latent instrument is no instrument
    check = check_instrument(G, "U", "X", "Y")
    assert not check and "latent" in check.reason


def test_treatment_is_not_its_own_instrument(iv):
    with pytest.raises(ValueError, match="same node 'X'"):
        check_instrument(iv, "X", "X", "Y")
    assert "X" not in instruments(iv, "X", "Y")


# --- inputs and errors ------------------------------------------------------


def test_accepts_object_with_graph_attribute(confounded, smoking):
    scm = StandIn(confounded)
    assert backdoor_sets(scm, "X", "Y") == [frozenset({"Z"})]
    assert d_separated(scm, "X", "Y", "Z") is False
    assert check_backdoor(scm, "X", "Y", {"Z"})
    assert identify(StandIn(smoking), "smoking", "cancer").frontdoor == [frozenset({"tar"})]


def test_rejects_undirected_graph():
    with pytest.raises(TypeError, match="DiGraph"):
        d_separated(nx.Graph([("a", "b")]), "a", "b")


def test_unknown_node(confounded):
    with pytest.raises(nx.NodeNotFound, match="'Q'") as info:
        check_backdoor(confounded, "X", "Y", {"Q"})
    assert "known nodes: 'X', 'Y', 'Z'" in str(info.value)
    with pytest.raises(nx.NodeNotFound, match="treatment 'nope'"):
        identify(confounded, "nope", "Y")
    with pytest.raises(nx.NodeNotFound, match="latent node 'V'"):
        backdoor_sets(confounded, "X", "Y", latent=["V"])
    with pytest.raises(nx.NodeNotFound, match="'Q'"):
        d_separated(confounded, "X", "Q")


def test_cycle_is_named():
    G = dag("a b c a", "c y")
    with pytest.raises(nx.NetworkXUnfeasible, match="cycle") as info:
        backdoor_sets(G, "a", "y")
    message = str(info.value)
    assert all(n in message for n in "abc")
    assert "->" in message


def test_overlapping_roles(confounded):
    with pytest.raises(ValueError, match="same node 'X'"):
        backdoor_sets(confounded, "X", "X")
    with pytest.raises(ValueError, match="same node 'X'"):
        identify(confounded, "X", "X")
    with pytest.raises(ValueError, match="adjustment set .* share {'Y'}"):
        check_backdoor(confounded, "X", "Y", {"Z", "Y"})
    with pytest.raises(ValueError, match="mediator"):
        check_frontdoor(confounded, "X", "Y", {"X"})
    with pytest.raises(ValueError, match="share"):
        d_separated(confounded, "X", "Y", {"X", "Z"})


def test_single_node_roles(confounded):
    with pytest.raises(TypeError, match="single node"):
        check_frontdoor(confounded, ["X", "Z"], "Y", set())


def test_check_is_a_frozen_truthy_dataclass():
    yes, no = Check(True, "fine"), Check(False, "broken")
    assert yes and not no
    assert str(no) == "fails: broken"
    with pytest.raises(AttributeError):
        yes.ok = False


# --- listings against brute force -------------------------------------------


def random_dag(rng, n, p):
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    G.add_edges_from((i, j) for i, j in itertools.combinations(range(n), 2) if rng.random() < p)
    return G


def subsets(nodes):
    nodes = sorted(nodes)
    return [frozenset(c) for k in range(len(nodes) + 1) for c in itertools.combinations(nodes, k)]


def minimal_only(sets):
    return [s for s in sets if not any(t < s for t in sets)]


def key(s):
    return (len(s), sorted(s))


@pytest.mark.parametrize("seed", range(60))
def test_listings_match_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(4, 9)
    G = random_dag(rng, n, rng.choice([0.25, 0.4, 0.6]))
    x, y = sorted(rng.sample(range(n), 2))
    hidden = set(rng.sample([v for v in G if v not in (x, y)], rng.randint(0, 2)))
    others = set(G) - {x, y} - hidden

    backdoor = [s for s in subsets(others) if check_backdoor(G, x, y, s, latent=hidden)]
    assert sorted(backdoor, key=key) == backdoor_sets(G, x, y, latent=hidden, minimal=False)
    assert sorted(minimal_only(backdoor), key=key) == backdoor_sets(G, x, y, latent=hidden)

    frontdoor = [s for s in subsets(others) if check_frontdoor(G, x, y, s, latent=hidden)]
    assert sorted(frontdoor, key=key) == frontdoor_sets(G, x, y, latent=hidden, minimal=False)
    assert sorted(minimal_only(frontdoor), key=key) == frontdoor_sets(G, x, y, latent=hidden)

    ivs = [z for z in sorted(others) if check_instrument(G, z, x, y, latent=hidden)]
    assert ivs == instruments(G, x, y, latent=hidden)


@pytest.mark.parametrize("seed", range(30))
def test_failing_checks_name_an_open_path(seed):
    rng = random.Random(1000 + seed)
    G = random_dag(rng, 8, 0.4)
    x, y = 1, 7
    for s in subsets(set(G) - {x, y}):
        check = check_backdoor(G, x, y, s)
        if not check and "descendant of treatment" not in check.reason:
            assert check.reason.startswith("backdoor path 1 <- ")


@pytest.mark.parametrize("seed", range(40))
def test_open_path_agrees_with_networkx(seed):
    from causalppl.causal.separators import _is_collider, open_path

    rng = random.Random(2000 + seed)
    G = random_dag(rng, 12, rng.choice([0.15, 0.3, 0.5]))
    for _ in range(20):
        nodes = rng.sample(range(12), rng.randint(2, 6))
        X, Y, Z = {nodes[0]}, {nodes[1]}, set(nodes[2:])
        if rng.random() < 0.3 and len(Z) > 1:
            X.add(Z.pop())
        cut = set(rng.sample(range(12), rng.randint(0, 3)))
        path = open_path(G, X, Y, Z, cut=cut)
        G_cut = G.copy()
        G_cut.remove_edges_from(list(G.out_edges(cut)))
        if nx.is_d_separator(G_cut, X, Y, Z):
            assert path is None
            continue
        assert path[0] in X and path[-1] in Y and len(set(path)) == len(path)
        assert not (set(path[1:-1]) & (X | Y))
        opening = Z.union(*(nx.ancestors(G_cut, z) for z in Z))
        assert all(G_cut.has_edge(a, b) or G_cut.has_edge(b, a) for a, b in zip(path, path[1:]))
        for a, n, b in zip(path, path[1:-1], path[2:]):
            assert (n in opening) if _is_collider(G_cut, a, n, b) else (n not in Z)


# --- ID / IDC: verdicts, estimands, hedges, and their numbers ---------------

import causalppl as cp  # noqa: E402
from causalppl.causal.admg import latent_projection  # noqa: E402
from causalppl.causal.discrete import exact_distribution  # noqa: E402
from causalppl.causal.id_algorithm import Hedge, NotIdentifiable, id_effect  # noqa: E402


def close(got, want, tol=1e-5):
    assert set(got) == set(want)
    return all(abs(got[k] - want[k]) < tol for k in want)


def check_numbers(result, scm, tol=1e-5):
    """evaluate() on the observational SCM equals exact do-surgery, for every treatment value."""
    X = sorted(result._X)
    for values in itertools.product([0, 1], repeat=len(X)):
        do = dict(zip(X, values))
        truth = exact_distribution(scm, list(result.outcomes), do=do)
        assert close(result.evaluate(scm, do=do), truth, tol), (do, result.evaluate(scm, do=do), truth)


def napkin_scm():
    scm = cp.SCM()
    scm.add("u1", "Bernoulli(0.4)", latent=True).add("u2", "Bernoulli(0.7)", latent=True)
    scm.add("w", "Bernoulli(0.1 + 0.4*u1 + 0.4*u2)")
    scm.add("z", "Bernoulli(0.2 + 0.6*w)")
    scm.add("x", "Bernoulli(0.1 + 0.5*z + 0.3*u1)")
    scm.add("y", "Bernoulli(0.15 + 0.5*x + 0.3*u2 - 0.1*x*u2)")
    return scm


def test_napkin_is_identified_by_id_and_its_number_is_right():
    scm = napkin_scm()
    result = identify(scm, "x", "y")
    assert result.identifiable and result.method == "ID"
    assert result.backdoor == [] and result.frontdoor == []
    assert str(result.estimand) == "Σ_w P(w)P(x,y|w,z) / Σ_w P(w)P(x|w,z)"
    assert result.estimand.free == {"x", "y", "z"}
    check_numbers(result, scm)


def frontdoor_two_mediators_scm():
    scm = cp.SCM()
    scm.add("u", "Bernoulli(0.5)", latent=True)
    scm.add("x", "Bernoulli(0.2 + 0.6*u)")
    scm.add("m1", "Bernoulli(0.1 + 0.7*x)")
    scm.add("m2", "Bernoulli(0.3 + 0.3*x + 0.3*m1)")
    scm.add("y", "Bernoulli(0.05 + 0.3*m1 + 0.3*m2 + 0.3*u)")
    return scm


def test_frontdoor_with_two_mediators():
    scm = frontdoor_two_mediators_scm()
    result = identify(scm, "x", "y")
    assert result.method == "frontdoor" and result.frontdoor_set == {"m1", "m2"}
    assert str(result.estimand) == "Σ_{m1,m2} P(m1,m2|x) Σ_x' P(x')P(y|m1,m2,x')"
    check_numbers(result, scm)
    # ID alone reaches the same numbers
    formula = id_effect(latent_projection(scm.graph, scm.latent), {"y"}, {"x"})
    from causalppl.causal.discrete import distribution
    assert close(distribution(formula, scm, ["y"], {"x": 1}), exact_distribution(scm, "y", do={"x": 1}))


def two_models(edges_1, edges_2):
    """Two SCMs over the same graph with the same observational law."""
    out = []
    for mechanisms in (edges_1, edges_2):
        scm = cp.SCM()
        for name, text in mechanisms:
            scm.add(name, text, latent=name.startswith("u"))
        out.append(scm)
    return out


def assert_not_identified_by_numbers(result, one, two, x, y):
    """A hedge means two models agree on every observed law yet differ on the effect."""
    observed = [n for n in one.nodes if n not in one.latent]
    assert close(exact_distribution(one, observed), exact_distribution(two, observed))
    assert not close(exact_distribution(one, y, do={x: 1}), exact_distribution(two, y, do={x: 1}), 0.1)
    with pytest.raises(NotIdentifiable, match="hedge"):
        result.evaluate(one, do={x: 1})


def test_bow_arc_is_not_identifiable_with_its_hedge():
    one, two = two_models(
        [("u", "Bernoulli(0.5)"), ("x", "Bernoulli(u)"), ("y", "Bernoulli(x + 0*u)")],
        [("u", "Bernoulli(0.5)"), ("x", "Bernoulli(u)"), ("y", "Bernoulli(0*x + u)")])
    result = identify(one, "x", "y")
    assert not result.identifiable and not result.estimand and result.method is None
    F, F_prime = result.hedge
    assert F == {"x", "y"} and F_prime == {"y"}
    assert "hedge" in str(result) and "F' = {'y'}" in str(result)
    assert_not_identified_by_numbers(result, one, two, "x", "y")


def test_instrument_graph_is_not_identifiable_non_parametrically():
    base = [("u", "Bernoulli(0.5)"), ("z", "Bernoulli(0.5)"), ("x", "Bernoulli(u + 0*z)")]
    one, two = two_models(base + [("y", "Bernoulli(x + 0*u)")], base + [("y", "Bernoulli(0*x + u)")])
    result = identify(one, "x", "y")
    assert not result.identifiable and result.instruments == ["z"]
    assert result.hedge == Hedge(frozenset("xy"), frozenset("y"))
    assert "non-parametrically" in result.strategy()
    assert_not_identified_by_numbers(result, one, two, "x", "y")


def test_hedge_without_the_outcome():
    # x -> z -> y with x <-> z: the mediator's own effect fails, F = {x, z}, F' = {z}
    one, two = two_models(
        [("u", "Bernoulli(0.5)"), ("x", "Bernoulli(u)"), ("z", "Bernoulli(x + 0*u)"), ("y", "Bernoulli(0.1 + 0.8*z)")],
        [("u", "Bernoulli(0.5)"), ("x", "Bernoulli(u)"), ("z", "Bernoulli(0*x + u)"), ("y", "Bernoulli(0.1 + 0.8*z)")])
    result = identify(one, "x", "y")
    assert not result.identifiable
    assert tuple(result.hedge) == (frozenset({"x", "z"}), frozenset({"z"}))
    assert_not_identified_by_numbers(result, one, two, "x", "y")


def test_idc_conditional_effect():
    # P(y | do(x), z) with z a cause of y only: IDC moves z into the treatment
    scm = cp.SCM()
    scm.add("u", "Bernoulli(0.5)", latent=True)
    scm.add("x", "Bernoulli(0.2 + 0.6*u)")
    scm.add("m", "Bernoulli(0.1 + 0.7*x)")
    scm.add("z", "Bernoulli(0.3 + 0.4*m)")
    scm.add("y", "Bernoulli(0.05 + 0.3*m + 0.3*z + 0.3*u)")
    result = identify(scm, "x", "y", given="z")
    assert result.identifiable and result.method == "IDC"
    for xv, zv in itertools.product([0, 1], repeat=2):
        joint = exact_distribution(scm, ["y", "z"], do={"x": xv})
        truth = {y: joint[(y, zv)] / (joint[(0, zv)] + joint[(1, zv)]) for y in (0, 1)}
        assert close(result.evaluate(scm, do={"x": xv}, given={"z": zv}), truth)
    with pytest.raises(ValueError, match="conditioning values"):
        result.evaluate(scm, do={"x": 1})


def test_evaluate_on_a_dataframe_converges_to_the_truth():
    pd = pytest.importorskip("pandas")
    scm = napkin_scm()
    cp.set_rng_seed(0)
    n = 200_000
    rows = scm.sample(n)
    frame = pd.DataFrame({k: v.numpy().astype(int) for k, v in rows.items() if k in "wzxy"})
    result = identify(scm, "x", "y")
    got = result.evaluate(frame, do={"x": 1})
    want = exact_distribution(scm, "y", do={"x": 1})
    assert abs(got[1] - want[1]) < 5 * 0.5 / n ** 0.5 * 3  # a few plug-in standard errors
    with pytest.raises(ValueError, match="no value 7"):
        result.evaluate(frame, do={"x": 7})


def test_categorical_tables_and_sets_of_treatments_and_outcomes():
    from causalppl.causal.learnable import CategoricalTable

    scm = cp.SCM()
    scm.add("u", "Bernoulli(0.6)", latent=True)
    scm.add("a", CategoricalTable("a", ["u"], num_categories=3, parent_cardinalities=[2]), latent=False)
    scm.add("x1", "Bernoulli(0.2 + 0.2*a)")
    scm.add("x2", "Bernoulli(0.3 + 0.5*x1)")
    scm.add("y1", "Bernoulli(0.1 + 0.3*x1 + 0.4*u)")
    scm.add("y2", "Bernoulli(0.2 + 0.3*x2 + 0.3*y1)")
    import torch

    g = torch_generator()
    scm.params["a.probs"] = torch.rand(2, 3, generator=g).softmax(-1)
    result = identify(scm, ["x1", "x2"], ["y1", "y2"])
    assert result.identifiable
    check_numbers(result, scm)


def torch_generator():
    import torch

    return torch.Generator().manual_seed(0)


def random_scm(rng, n_observed, n_latent):
    """Binary SCM: a random DAG over v0..vk, latent confounders of nearby pairs, random
    probabilities with interactions."""
    names = [f"v{i}" for i in range(n_observed)]
    parents = {v: [] for v in names}
    for i, v in enumerate(names):
        parents[v] = [w for w in names[:i] if rng.random() < 0.4]
    scm = cp.SCM()
    latents = []
    for j in range(n_latent):
        a, b = sorted(rng.sample(names, 2))
        latents.append((f"u{j}", (a, b)))
        scm.add(f"u{j}", f"Bernoulli({rng.uniform(0.2, 0.8):.3f})", latent=True)
    for v in names:
        ps = parents[v] + [u for u, pair in latents if v in pair]
        terms = [f"{rng.uniform(0.05, 0.25):.3f}"]
        budget = 0.7
        for p in ps:
            c = rng.uniform(-1, 1) * budget / len(ps)
            terms.append(f"{c:+.3f}*{p}")
        if len(ps) >= 2:
            terms.append(f"{rng.uniform(-1, 1) * 0.05:+.3f}*{ps[0]}*{ps[1]}")
        # shift so that probabilities stay within (0.02, 0.98)
        low = sum(min(0.0, float(t.split('*')[0])) for t in terms[1:])
        terms[0] = f"{float(terms[0]) - low:.3f}"
        scm.add(v, f"Bernoulli({' '.join(terms)})")
    return scm


@pytest.mark.parametrize("seed", range(40))
def test_random_scms_identified_effects_match_do_surgery(seed):
    rng = random.Random(seed)
    scm = random_scm(rng, rng.randint(4, 6), rng.randint(1, 3))
    observed = [v for v in scm.nodes if v not in scm.latent]
    x = rng.sample(observed[:-1], rng.choice([1, 1, 2]))
    y = [v for v in observed if v not in x][-1:]
    result = identify(scm, x, y)
    if result.identifiable:
        check_numbers(result, scm)
        formula = id_effect(latent_projection(scm.graph, scm.latent), set(y), set(x))
        assert formula.free <= set(x) | set(y)
    else:
        F, F_prime = result.hedge
        admg = latent_projection(scm.graph, scm.latent)
        assert F_prime < F and F & set(x) and not F_prime & set(x)
        for part in (F, F_prime):
            assert admg.subgraph(part).districts() == [part]

        def roots(part):
            return {v for v in part if not admg.ch[v] & part}
        assert roots(F) == roots(F_prime)


@pytest.mark.parametrize("seed", range(15))
def test_random_conditional_effects_match_do_surgery(seed):
    rng = random.Random(100 + seed)
    scm = random_scm(rng, 5, rng.randint(1, 2))
    observed = [v for v in scm.nodes if v not in scm.latent]
    x, z, y = rng.sample(observed, 3)
    result = identify(scm, x, y, given=z)
    if not result.identifiable:
        assert result.hedge is not None
        return
    for xv, zv in itertools.product([0, 1], repeat=2):
        joint = exact_distribution(scm, [y, z], do={x: xv})
        total = joint[(0, zv)] + joint[(1, zv)]
        if total < 1e-6:
            continue
        truth = {v: joint[(v, zv)] / total for v in (0, 1)}
        assert close(result.evaluate(scm, do={x: xv}, given={z: zv}), truth, 1e-4)


def benchmark_graph(n, **options):
    """The random graph of benchmarks/identify.py (one generator for the benchmark and this test)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "identify.py"
    spec = importlib.util.spec_from_file_location("identify_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.random_graph(n, **options)


def test_200_node_graph_answers_in_time():
    import time

    G, x, y = benchmark_graph(200, confounded=True)  # x <-> y latent: no backdoor set, ID must run
    assert (x, y)[1] == "v195" and G.nodes["u_xy"]["latent"]
    start = time.perf_counter()
    result = identify(G, x, y)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, elapsed
    assert result.adjustment is None and result.method in ("ID", "frontdoor", None)
    assert result.identifiable == (result.hedge is None)


def test_estimand_objects_print_readably():
    G = dag("z x", "z y", "x y")
    result = identify(G, "x", "y")
    assert str(result.estimand) == "Σ_z P(z)P(y|x,z)"
    assert result.estimand.equation() == "P(y | do(x)) = Σ_z P(z)P(y|x,z)"
    assert repr(result.estimand.formula) == "Sum<Σ_z P(z)P(y|x,z)>"
    data = result.to_dict()
    assert data["identifiable"] and data["method"] == "backdoor" and data["hedge"] is None
    assert data["adjustment"] == ["z"] and data["optimal_adjustment"] == ["z"]


def test_latent_roles_are_refused():
    G = dag("u x y", latent=["u"])
    with pytest.raises(ValueError, match="'u' is latent"):
        identify(G, "u", "y")
