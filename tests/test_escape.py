"""escape / queue: leaving a run at a site, and enumerating discrete traces one at a time."""

import functools
import queue as stdlib_queue

import pytest
import torch

import causalppl as cp
from causalppl.handlers import NonlocalExit, escape, queue, trace
from causalppl.handlers.util import all_escape, discrete_escape, prune_subsample_sites


def chain():
    """Three dependent coins and a categorical, then an observation."""
    a = cp.sample("a", cp.dist.Bernoulli(torch.tensor(0.3)))
    b = cp.sample("b", cp.dist.Bernoulli(0.2 + 0.6 * a))
    c = cp.sample("c", cp.dist.Categorical(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])[b.long()]))
    cp.sample("x", cp.dist.Normal(c.float(), 1.0), obs=torch.tensor(1.5))


def test_queue_visits_every_discrete_assignment_once_and_their_priors_sum_to_one():
    todo = stdlib_queue.Queue()
    todo.put(cp.handlers.Trace())
    run = trace(queue(chain, queue=todo))
    traces = []
    while not todo.empty():
        traces.append(run.get_trace())
    assignments = {tuple(int(tr.nodes[n]["value"]) for n in "abc") for tr in traces}
    assert len(traces) == len(assignments) == 2 * 2 * 3
    prior = sum(
        torch.exp(sum(tr.nodes[n]["fn"].log_prob(tr.nodes[n]["value"]) for n in "abc")) for tr in traces
    )
    assert prior.item() == pytest.approx(1.0, abs=1e-6)
    # the posterior of a from the enumerated traces equals the exact one
    joint = {tuple(int(tr.nodes[n]["value"]) for n in "abc"): tr.log_prob_sum().exp().item() for tr in traces}
    p_a1 = sum(w for k, w in joint.items() if k[0] == 1) / sum(joint.values())
    normal = torch.distributions.Normal
    like = [normal(float(c), 1.0).log_prob(torch.tensor(1.5)).exp().item() for c in range(3)]
    table = [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]
    marginal = {a: sum(pb * sum(p * q for p, q in zip(table[b], like))
                       for b, pb in enumerate([1 - (0.2 + 0.6 * a), 0.2 + 0.6 * a])) for a in (0, 1)}
    exact = 0.3 * marginal[1] / (0.3 * marginal[1] + 0.7 * marginal[0])
    assert p_a1 == pytest.approx(exact, rel=1e-5)


def test_queue_gives_up_after_max_tries_and_on_an_empty_queue():
    todo = stdlib_queue.Queue()
    todo.put(cp.handlers.Trace())
    with pytest.raises(ValueError, match=r"max tries \(2\) exceeded"):
        queue(chain, queue=todo, max_tries=2)()
    with pytest.raises(ValueError, match="no partial traces left"):
        queue(chain, queue=stdlib_queue.Queue())()


def mixed():
    x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    y = cp.sample("y", cp.dist.Bernoulli(torch.tensor(0.5)))
    z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    return x, y, z


def test_queue_keeps_the_draws_before_the_discrete_site_and_redraws_after_it():
    todo = stdlib_queue.Queue()
    todo.put(cp.handlers.Trace())
    run = queue(mixed, queue=todo)
    (x0, y0, z0), (x1, y1, z1) = run(), run()
    assert x0 == x1 and {int(y0), int(y1)} == {0, 1} and z0 != z1
    assert todo.empty()


@pytest.mark.parametrize("escape_fn, where", [(all_escape, "x"), (discrete_escape, "y")])
def test_escape_stops_at_the_first_site_its_rule_picks(escape_fn, where):
    with pytest.raises(NonlocalExit) as caught:
        escape(mixed, escape_fn=functools.partial(escape_fn, cp.handlers.Trace()))()
    assert caught.value.site["name"] == where


def test_handlers_inside_an_escape_see_the_escaped_site_and_those_outside_do_not():
    inner = trace(mixed)
    with pytest.raises(NonlocalExit):
        escape(inner, escape_fn=functools.partial(all_escape, cp.handlers.Trace()))()
    assert "x" in inner.trace
    outer = trace(escape(mixed, escape_fn=functools.partial(all_escape, cp.handlers.Trace())))
    with pytest.raises(NonlocalExit):
        outer()
    assert "x" not in outer.trace


def test_escape_needs_a_callable_rule_and_prune_drops_subsample_sites():
    with pytest.raises(TypeError, match="escape_fn"):
        escape(mixed, escape_fn=None)

    def model():
        with cp.plate("rows", 10, subsample_size=3):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    tr = trace(model).get_trace()
    assert "rows" in tr and "rows" not in prune_subsample_sites(tr) and "z" in prune_subsample_sites(tr)


# --- resetting the stack after an escape (Pyro's NonlocalExit.reset_stack) -----------------


def test_reset_stack_resets_traces_up_to_the_block_that_hides_the_site():
    def coins():
        cp.sample("first", cp.dist.Bernoulli(0.5))
        with escape(escape_fn=lambda msg: msg["name"] == "third"):
            cp.sample("second", cp.dist.Bernoulli(0.5))
            cp.sample("third", cp.dist.Bernoulli(0.5))

    with trace() as outer:
        with cp.handlers.block(hide=["third"]):
            with trace() as inner:
                with pytest.raises(NonlocalExit) as caught:
                    coins()
                caught.value.reset_stack()
                assert "second" not in inner.trace  # inside the block: started afresh
    assert "second" in outer.trace  # outside the block that hides 'third': left as it was


def test_a_traced_queue_keeps_its_inputs_across_retries():
    todo = stdlib_queue.Queue()
    todo.put(cp.handlers.Trace())
    tr = trace(queue(chain, queue=todo)).get_trace()
    assert "_INPUT" in tr and "a" in tr and "x" in tr


def test_an_empty_queue_is_an_error_not_a_deadlock():
    with pytest.raises(ValueError, match="no partial traces left"):
        queue(chain, queue=stdlib_queue.Queue())()
