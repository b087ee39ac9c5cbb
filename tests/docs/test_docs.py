"""The README and docs/ say only what nodecli does: every relative link resolves, every
`nodecli …` example is accepted by the command it shows, and the README stays short.

Which lines are examples: in a fenced block tagged `bash`, `sh`, `shell` or `console`,
every line that starts with `nodecli ` (or `$ nodecli `, after optional `VAR=value`
prefixes); in an untagged output block, every line that starts with `$ ` and runs
`nodecli`. A backslash at the end of a line continues it. Shell comments, redirections
(`> file`) and pipes are dropped.

How each is checked, in this process and without training:
- `nodecli train|sweep|gradcheck …` is composed and validated exactly as the command does
  before any work starts (compose_config; the sweep's plan_sweep + validate_jobs; the
  gradcheck command up to its machine check), so a wrong group, key or value fails;
  the machine checks (a GPU, dataset files) are left out: an example may name a GPU;
- `nodecli`, `nodecli --help`, `nodecli <command> --help`, `nodecli backends` and every
  `nodecli report …` are run (report on hand-made records in the folders the examples
  name) and must exit 0;
- an output block's `$ nodecli …` line followed by `nodecli: error: …` must fail with
  exactly that line (machine checks included, on a machine that sees only the CPU).

Skip convention: a line whose comment contains `needs: gpu` or `needs: user module`
(`nodecli train device=cuda model=custom …  # needs: user module`) is not checked, since
it cannot be composed or run without a GPU or the user's own Python module. Nothing
else is ever skipped: an example of a feature that is missing fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
SKIP_MARKERS = ("needs: gpu", "needs: user module")

# The folders the examples name; the fixture writes hand-made records there.
EXAMPLE_RUN = "outputs/runs/2026-11-22/20-07-15-f85a7e"
EXAMPLE_SWEEP = "outputs/sweeps/2026-11-22/20-10-54"
EXAMPLE_SWEEP_JOBS = ["sensealg=adjoint,direct", "seed=0,1"]


# --- reading the pages ---------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    text: str  # the command line, `$ ` and continuations removed
    expected_error: str | None = None  # the `nodecli: error: …` line shown after it

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}: {self.text[:70]}"


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(info string, first line number, lines) of every fenced code block."""
    blocks, info, start, lines = [], None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        fence = re.match(r"^\s*```(.*)$", line)
        if fence and info is None:
            info, start, lines = fence.group(1).strip(), number + 1, []
        elif fence and line.strip() == "```":
            blocks.append((info, start, lines))
            info = None
        elif info is not None:
            lines.append(line)
    return blocks


def joined(lines: list[str], start: int) -> list[tuple[int, str]]:
    """The block's lines with backslash continuations joined, numbered by their first."""
    out: list[tuple[int, str]] = []
    pending, first = "", 0
    for offset, line in enumerate(lines):
        if not pending:
            first = start + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, pending + line))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


ENV_PREFIX = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*")


def command_of(line: str) -> str | None:
    """LINE's `nodecli …` command, or None when it runs something else."""
    text = ENV_PREFIX.sub("", line.strip().removeprefix("$ ").strip())
    return text if text == "nodecli" or text.startswith("nodecli ") else None


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        name = str(page.relative_to(ROOT))
        for info, start, lines in fenced_blocks(page.read_text(encoding="utf-8")):
            shell = info.split(" ")[0] in ("bash", "sh", "shell", "console")
            if not shell and info not in ("", "text"):
                continue  # python, json, …
            numbered = joined(lines, start)
            for i, (number, line) in enumerate(numbered):
                if not shell and not line.startswith("$ "):
                    continue
                command = command_of(line)
                if command is None:
                    continue
                after = numbered[i + 1][1] if i + 1 < len(numbered) else ""
                error = after.removeprefix("nodecli: error: ")
                expected = error if not shell and after.startswith("nodecli: error: ") else None
                found.append(Example(name, number, command, expected))
    return found


def words(command: str) -> list[str]:
    """The arguments after `nodecli`: comments, redirections and pipes dropped."""
    tokens = shlex.split(command, comments=True)
    for i, token in enumerate(tokens):
        if token in ("|", "||", "&&", ";") or token.startswith((">", "2>", "<")):
            tokens = tokens[:i]
            break
    return tokens[1:]


# --- hand-made records in the folders the examples name ------------------------------


def write_run(run_dir: Path, overrides: list[str], config_yaml: str) -> None:
    from nodecli.record.layout import METRIC_COLUMNS

    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(config_yaml)
    (run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(sorted(overrides)))
    seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 0)
    rows = [",".join(METRIC_COLUMNS)]
    for epoch in (1, 2, 3):
        time = 0.05 + 0.01 * epoch + 0.001 * seed + 0.02 * ("adjoint" in str(overrides))
        rows.append(
            f"{epoch},{time:.4f},{2.0 / epoch:.4f},{50 + 10 * epoch},{48 + 10 * epoch},"
            f"154,143,415000,480000,0.0"
        )
    (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
    backend = next((o.split("=")[1] for o in overrides if o.startswith("backend=")), "nodecli")
    info = {
        "started_at": "2026-11-22T20:07:15.000+00:00",
        "run_id": "0123456789abcdef",
        "devices": [{"device": "cpu", "from_epoch": 1}],
        "status": "completed",
        "error": None,
        "ended_at": "2026-11-22T20:07:16.000+00:00",
        "heartbeat_at": "2026-11-22T20:07:16.000+00:00",
        "epochs_completed": 3,
        "versions": {"python": "3.11", "torch": "2.4", "torchdiffeq": "0.2.5", "nodecli": "0.1"},
        "backend": backend,
        "device": "cpu",
        "threads": 1,
        "overrides": overrides,
        "argv": ["nodecli", "train", *overrides],
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """A folder holding the records the docs' examples read: one run, one sweep (with its
    sweep.json, so `sweep.resume` examples plan against it), a backend comparison, and
    the five-method study `sw15` the figure is drawn from."""
    from nodecli.config.compose import compose_config
    from nodecli.sweep.plan import expand_jobs

    root = tmp_path_factory.mktemp("records")

    def config_yaml(overrides: list[str]) -> str:
        return OmegaConf.to_yaml(OmegaConf.structured(compose_config(overrides)))

    write_run(root / EXAMPLE_RUN, [], config_yaml([]))
    jobs = expand_jobs(EXAMPLE_SWEEP_JOBS)
    sweep = root / EXAMPLE_SWEEP
    for num, job in enumerate(jobs):
        write_run(sweep / f"{num}_{','.join(sorted(job))}", job, config_yaml(job))
    plan = {"job_overrides": EXAMPLE_SWEEP_JOBS, "hydra_overrides": [], "n_jobs": len(jobs)}
    (sweep / "sweep.json").write_text(json.dumps({**plan, "jobs": jobs, "resumed_at": []}))
    for backend in ("torchdiffeq", "torchdyn", "torchode"):
        job = [f"backend={backend}"]
        write_run(root / "outputs/sweeps/2026-11-23/backends" / backend, job, config_yaml(job))
    for method in ("direct", "adjoint", "checkpoint", "interpolating", "gauss"):
        job = [f"sensealg={method}"]
        write_run(root / "sw15" / f"0_sensealg={method}", job, config_yaml(job))
    # docs/study.md's two sweeps, two cells each per model; its --plot writes into docs/.
    for model in ("mlp", "conv"):
        for num, cell in enumerate(["model.hidden=8", "model.t1=4"]):
            job = [f"model={model}", "sensealg=adjoint", cell]
            write_run(root / "outputs/study" / model / f"{num}_{cell}", job, config_yaml(job))
    (root / "docs").mkdir()
    return root


# --- checking one example -----------------------------------------------------------


class StopBeforeWork(Exception):
    """Raised where a command would start its work: everything before was accepted."""


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    _, err = capsys.readouterr()
    return exit_info.value.code or 0, err.strip()


def compose_train(args: list[str], with_machine: bool) -> None:
    """What `nodecli train ARGS` checks before Hydra starts (nodecli.train.command)."""
    from nodecli.config.compose import compose_config
    from nodecli.config.environment import check_environment
    from nodecli.config.launch import hydra_arg_parser
    from nodecli.config.overrides import override_value
    from nodecli.errors import UsageError
    from nodecli.train.resume import resume_overrides

    parsed = hydra_arg_parser().parse_args(args)
    if parsed.multirun:
        raise UsageError("train runs one job; use `nodecli sweep` for multirun")
    overrides = parsed.overrides
    resume = [o for o in overrides if o.startswith("resume=")]
    if resume:
        rest = [o for o in overrides if o not in resume]
        overrides = resume_overrides(override_value(resume[-1]), rest)
    config = compose_config(overrides)
    if with_machine:
        check_environment(config)


def compose_sweep(args: list[str], with_machine: bool, monkeypatch) -> None:
    """What `nodecli sweep ARGS` checks before it claims its folder (nodecli.sweep)."""
    from nodecli.sweep import plan as sweep_plan

    if not with_machine:
        monkeypatch.setattr(sweep_plan, "check_environment", lambda config: None)
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    sweep_plan.validate_jobs(sweep_plan.plan_sweep(overrides))


def compose_gradcheck(args: list[str], monkeypatch) -> None:
    """`nodecli gradcheck ARGS` up to its machine check, where its work begins."""
    from nodecli import gradcheck

    def stop(config) -> None:
        raise StopBeforeWork

    monkeypatch.setattr(gradcheck, "check_environment", stop)
    with pytest.raises(StopBeforeWork):
        gradcheck.gradcheck_command(args)


def problem(
    args: list[str], expected: str | None, records: Path, tmp_path: Path, monkeypatch, capsys
) -> str | None:
    """What is wrong with `nodecli ARGS` as the docs show it (EXPECTED: the error line
    shown after it); None when it does what they say."""
    from nodecli.errors import ConfigError, UsageError

    command = args[0] if args else "--help"
    runs = command in ("--help", "-h", "backends", "report") or "--help" in args
    uses_records = command == "report" or any("resume=" in a for a in args)
    monkeypatch.chdir(records if uses_records else tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    if runs or command not in ("train", "sweep", "gradcheck"):
        code, err = run_cli(args, capsys)
        if expected is not None:
            shown = f"nodecli: error: {expected}"
            return None if err == shown else f"fails with {err!r}; the docs show {shown!r}"
        return None if code == 0 else f"exit {code}: {err}"
    try:
        if command == "train":
            compose_train(args[1:], with_machine=expected is not None)
        elif command == "sweep":
            compose_sweep(args[1:], expected is not None, monkeypatch)
        else:
            compose_gradcheck(args[1:], monkeypatch)
    except (ConfigError, UsageError) as exc:
        if expected is None:
            return f"refused: {exc}"
        return (
            None
            if str(exc) == expected
            else f"refused with {str(exc)!r}; the docs show {expected!r}"
        )
    return None if expected is None else f"accepted, but the docs show: {expected}"


EXAMPLES = examples()
# What each distinct command line (with the error shown after it) was found to do: the
# same example on several pages (`nodecli train --help`) is checked once, and each of its
# pages and lines is still a test of its own, reporting that outcome.
OUTCOMES: dict[tuple[tuple[str, ...], str | None], str | None] = {}


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_every_nodecli_example_in_the_docs_is_accepted_as_shown(
    example: Example, records: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    if any(marker in example.text for marker in SKIP_MARKERS):
        pytest.skip(f"marked as needing a GPU or a user's module: {example.text}")
    args = words(example.text)
    key = (tuple(args), example.expected_error)
    if key not in OUTCOMES:
        OUTCOMES[key] = problem(
            args, example.expected_error, records, tmp_path, monkeypatch, capsys
        )
    assert OUTCOMES[key] is None, f"{example.id}\n{OUTCOMES[key]}"


def test_the_docs_hold_examples_of_every_command() -> None:
    commands = {words(e.text)[0] for e in EXAMPLES if words(e.text)}
    assert {"train", "sweep", "report", "gradcheck", "backends", "--help"} <= commands


# --- links --------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^\s*```.*?^\s*```", "", text)  # a `# comment` in code is no heading
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def links(page: Path) -> list[str]:
    text = re.sub(r"(?ms)^\s*```.*?^\s*```", "", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [m.group(1) for m in LINK.finditer(text)]


def relative_links() -> list[tuple[Path, str]]:
    return [
        (page, target)
        for page in PAGES
        for target in links(page)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # https:, mailto:
    ]


@pytest.mark.parametrize(
    ("page", "target"),
    relative_links(),
    ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in relative_links()],
)
def test_every_relative_link_resolves_to_a_file_and_heading(page: Path, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    file = (page.parent / path_part).resolve() if path_part else page
    assert file.exists(), f"{page.relative_to(ROOT)}: {target} names no file"
    if anchor:
        assert file.suffix == ".md", f"{target}: an anchor into a non-Markdown file"
        assert anchor in anchors(file), f"{page.relative_to(ROOT)}: {target}: no such heading"


def test_the_link_checker_finds_files_and_headings() -> None:
    assert slug("`nodecli report`") == "nodecli-report"
    assert slug("Claims (.nodecli.lock)") == "claims-nodeclilock"
    assert "nodecli-sweep" in anchors(ROOT / "docs" / "usage.md")
    assert len(relative_links()) > 20


# --- length -------------------------------------------------------------------------


def test_the_readme_is_at_most_300_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines"
