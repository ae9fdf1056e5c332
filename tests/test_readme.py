"""The README's Python examples run as written (in a scratch folder)."""

import re
import shutil
from pathlib import Path

import pytest

import causalppl as cp

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    if "draw(" in BLOCKS[index] and shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    monkeypatch.chdir(tmp_path)
    cp.set_rng_seed(0)
    namespace = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)  # our own docs, not user input
    if "svi" in namespace:  # the tutorial block reaches the analytic posterior
        assert abs(cp.param("a").item() - 9.14) < 0.12
        assert abs(cp.param("b").item() - 0.60) < 0.08
    if "fitted" in namespace:
        assert (tmp_path / "scm.svg").exists()
