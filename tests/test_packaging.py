"""Packaging and the README's promises: every package is installed under `arena`, and CI
runs exactly the README's set-up and test commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"arena": "arena", "envs": "arena.envs", "agents": "arena.agents", "sandbox": "arena.sandbox"}


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for folder, package in MAPPED.items():
        assert config["package-dir"][package] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([package, *rel.parts])
            assert name in listed, f"{name} ({init.parent}) is missing from [tool.setuptools] packages"


def test_no_top_level_envs_agents_or_sandbox_package():
    import arena.agents
    import arena.envs

    assert arena.envs.__name__ == "arena.envs" and arena.agents.__name__ == "arena.agents"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert not any(p.split(".")[0] in ("envs", "agents", "sandbox") for p in config["packages"])


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_commands():
    setup, test, play = readme_commands()[:3]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert setup in ci_lines and test in ci_lines, (setup, test, ci_lines)
    assert ci_lines.index(setup) < ci_lines.index(test)
    assert play in ci_lines


def test_readme_env_example_passes_check_env(tmp_path, monkeypatch):
    """The README's one-file env, registered the README's way, passes `arena.check_env`."""
    import sys

    import arena
    from arena.registry import _REGISTRY

    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# my_games/coin.py\n.*?)```", text, re.DOTALL).group(1)
    (tmp_path / "my_games").mkdir()
    (tmp_path / "my_games" / "__init__.py").write_text("")
    (tmp_path / "my_games" / "coin.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        __import__("my_games.coin")
        arena.check_env("mine/CoinGuess-v0", fuzz_steps=500)
        assert "mine/CoinGuess-v0" in arena.registry()
    finally:
        _REGISTRY.pop("mine/CoinGuess-v0", None)
        for name in ("my_games.coin", "my_games"):
            sys.modules.pop(name, None)
