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


CLI_SECTION = README.read_text().split("## The command line")[1].split("\n## ")[0]
CLI_BLOCKS = re.findall(r"```bash\n(.*?)```", CLI_SECTION, flags=re.S)


def test_the_cli_section_is_a_workflow_that_runs(tmp_path):
    """The command-line section's block runs end to end in bash (`causalppl` = this checkout's CLI)."""
    import os
    import subprocess
    import sys

    assert CLI_BLOCKS and "fit" in CLI_BLOCKS[0] and "ate" in CLI_BLOCKS[0]
    script = CLI_BLOCKS[0]
    if shutil.which("dot") is None:
        script = "\n".join(line for line in script.splitlines() if not line.startswith("causalppl draw"))
    root = str(README.parent)
    prelude = f'set -euo pipefail\ncausalppl() {{ "{sys.executable}" -m causalppl.cli "$@"; }}\n'
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(["bash", "-c", prelude + script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert '"mean"' in done.stdout and "ATE of x on y" in done.stdout
    assert (tmp_path / "model.cpm").exists()
