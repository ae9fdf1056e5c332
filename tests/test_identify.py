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
