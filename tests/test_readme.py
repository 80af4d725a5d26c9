"""The README's commands exist as written: every `proface …`, `python -m …` and benchmark script in its
bash blocks answers `--help`, and every `--flag` the README shows is one that command accepts
(`--config.a.b` overrides: a field of that command's config). What they *do* is tested elsewhere:
the set-up commands by CI (.ci/run), protect/recover/demo in test_cli, training in test_train,
evaluation and model cards in test_evaluate, the converter in test_convert_torch.
"""
from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n\s*", " ", block)  # join continuation lines
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith(("proface ", "python -m experiments", "python -m proface_jax", "python benchmarks/")):
                    cmds.append(part)
    return cmds


COMMANDS = readme_commands()


def _argv(cmd: str) -> tuple[list[str], list[str]]:
    """(argv prefix that answers --help, the flags the README line shows)."""
    words = shlex.split(cmd.replace("[", " ").replace("]", " ").replace("|", " "))
    flags = [w.split("=")[0] for w in words if w.startswith("--")]
    if words[0] == "proface":
        prefix = [sys.executable, "-m", "proface_jax.cli"] + ([words[1]] if not words[1].startswith("-") else [])
    elif words[:2] == ["python", "-m"]:
        prefix = [sys.executable, "-m", words[2]]
    else:
        prefix = [sys.executable, words[1]]
    return prefix, flags


def test_readme_has_the_commands_it_should():
    joined = "\n".join(COMMANDS)
    for needed in ("proface protect", "proface recover", "proface demo", "experiments.train", "experiments.evaluate",
                   "proface_jax.convert_torch", "proface_jax.invertibility"):
        assert needed in joined, needed


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_readme_command_accepts_its_flags(cmd):
    prefix, flags = _argv(cmd)
    run = subprocess.run(prefix + ["--help"], cwd=REPO, capture_output=True, text=True, timeout=300)
    help_text = run.stdout + run.stderr
    # argparse exits 0 on --help; absl (experiments.train) exits 1 after printing its flags.
    ok = run.returncode == 0 or (prefix[2:3] == ["experiments.train"] and run.returncode == 1)
    assert ok and "Traceback" not in help_text, f"{cmd!r}: --help failed\n{help_text[-2000:]}"
    config = None
    for flag in flags:
        if flag.startswith("--config."):
            if config is None:  # the --config file the line names, else the default (paper112)
                words = shlex.split(cmd)
                path = words[words.index("--config") + 1] if "--config" in words else "experiments/configs/paper112.py"
                config = importlib.import_module(path[:-3].replace("/", ".")).get_config()
            node = config
            for part in flag[len("--config."):].split("."):
                assert part in node, f"{cmd!r}: the config has no field {flag[len('--config.'):]}"
                node = node[part]
        else:
            assert re.search(re.escape(flag) + r"\b", help_text), f"{cmd!r}: {flag} is not in its --help"
