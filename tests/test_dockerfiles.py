"""The Dockerfiles under docker/: syntax, copied files, exec-form commands, non-root users.

No Docker engine runs here, so a small parser reads each file the way the Dockerfile
frontend does (parser directives, comments, line continuations, exec vs shell form) and
the checks below stand in for a build.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
README = DOCKER / "README.md"
FILES = ("train", "serve", "deepstream")

KEYWORDS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
            "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
            "WORKDIR"}
_VAR = re.compile(r"\$\{?(\w+)")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: directives and comments dropped, continuations joined."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue  # blank line, comment or parser directive (# syntax=...)
        if buf and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if not buf:
            start = number
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        keyword, _, args = " ".join(p for p in buf if p).partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = []
    if buf:
        raise ValueError(f"line {start}: the file ends inside a continued instruction")
    return out


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT/RUN, or None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    return value if ok else None


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """``--from=x --chown=a b c`` -> ({"from": "x", "chown": "a"}, ["b", "c"])."""
    words = exec_form(args) or args.split()
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def problems(path: Path) -> list[str]:
    """Every rule a Dockerfile breaks, each as ``file:line: what``."""
    found: list[str] = []
    text = path.read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8") if README.is_file() else ""
    try:
        instructions = parse(text)
    except ValueError as exc:
        return [f"{path.name}: {exc}"]
    stages: set[str] = set()
    args: set[str] = set()
    seen_from = False
    for ins in instructions:
        where = f"{path.name}:{ins.line}"
        if ins.keyword not in KEYWORDS:
            found.append(f"{where}: unknown instruction {ins.keyword!r}")
            continue
        if not seen_from and ins.keyword not in ("ARG", "FROM"):
            found.append(f"{where}: {ins.keyword} before the first FROM")
        if ins.keyword == "ARG":
            args.add(ins.args.split("=", 1)[0].strip())
        elif ins.keyword == "FROM":
            seen_from = True
            words = ins.args.split()
            found += [f"{where}: FROM uses undeclared ARG {v}" for v in _VAR.findall(words[0])
                      if v not in args]
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif ins.keyword in ("CMD", "ENTRYPOINT") and exec_form(ins.args) is None:
            found.append(f"{where}: {ins.keyword} must be in exec form ([\"prog\", \"arg\"])")
        elif ins.keyword == "HEALTHCHECK":
            _, _, cmd = ins.args.partition("CMD ")
            if ins.args.strip() != "NONE" and exec_form(cmd.strip()) is None:
                found.append(f"{where}: HEALTHCHECK CMD must be in exec form")
        elif ins.keyword in ("COPY", "ADD"):
            found += _copy_problems(ins, where, stages, args, readme)
    if not seen_from:
        found.append(f"{path.name}: no FROM instruction")
    return found


def _copy_problems(ins: Instruction, where: str, stages: set[str], args: set[str],
                   readme: str) -> list[str]:
    flags, words = split_flags(ins.args)
    if len(words) < 2:
        return [f"{where}: {ins.keyword} needs a source and a destination"]
    if "from" in flags:
        stage = flags["from"]
        return [] if stage in stages or stage in readme else [
            f"{where}: --from={stage} is neither an earlier stage nor documented"]
    found = []
    for src in words[:-1]:
        used = _VAR.findall(src)
        if used:
            found += [f"{where}: source {src} uses ARG {v}, which is not declared before it"
                      for v in used if v not in args]
            found += [f"{where}: build ARG {v} is not documented in docker/README.md"
                      for v in used if f"`{v}`" not in readme]
            continue
        if ".." in Path(src).parts or Path(src).is_absolute():
            found.append(f"{where}: source {src} is outside the build context")
        elif not (ROOT / src).exists() and src.rstrip("/") not in readme:
            found.append(f"{where}: source {src} does not exist in the repository and "
                         f"docker/README.md does not say how to provide it")
    return found


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last:]


@pytest.fixture(scope="module", params=FILES, ids=FILES)
def dockerfile(request: pytest.FixtureRequest) -> Path:
    return DOCKER / f"{request.param}.Dockerfile"


def test_dockerfile_is_valid(dockerfile: Path) -> None:
    assert problems(dockerfile) == []


@pytest.mark.parametrize("name", ["train", "serve"])
def test_runs_as_non_root_user(name: str) -> None:
    final = final_stage(parse((DOCKER / f"{name}.Dockerfile").read_text()))
    users = [ins.args.split(":")[0] for ins in final if ins.keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


@pytest.mark.parametrize(("name", "extras"), [("train", {"train"}), ("serve", {"serve", "gpu"})],
                         ids=["train", "serve"])
def test_installs_extras_defined_in_pyproject(name: str, extras: set[str]) -> None:
    text = (DOCKER / f"{name}.Dockerfile").read_text()
    installed = set(re.findall(r'pip install "?\.\[([\w,]+)\]', text)[0].split(","))
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    defined = set(re.findall(r"^([\w-]+)\s*=", section, flags=re.M))
    assert installed == extras and extras <= set(defined)


def test_train_image_is_offline_and_runs_detforge() -> None:
    final = final_stage(parse((DOCKER / "train.Dockerfile").read_text()))
    env = " ".join(ins.args for ins in final if ins.keyword == "ENV")
    assert "YOLO_OFFLINE=1" in env and "YOLO_AUTOINSTALL=False" in env
    assert "YOLO_CONFIG_DIR=" in env and "MPLCONFIGDIR=" in env
    (entry,) = [exec_form(i.args) for i in final if i.keyword == "ENTRYPOINT"]
    assert entry == ["detforge"]


def test_serve_image_exposes_port_and_checks_health() -> None:
    final = final_stage(parse((DOCKER / "serve.Dockerfile").read_text()))
    keywords = {ins.keyword: ins.args for ins in final}
    assert keywords["EXPOSE"] == "8000" and "/health" in keywords["HEALTHCHECK"]
    assert exec_form(keywords["CMD"])[:2] == ["serve", "/models"]  # type: ignore[index]
    assert keywords["FROM"].startswith("${TENSORRT_IMAGE}")


def test_deepstream_image_builds_parser_and_runs_app() -> None:
    text = (DOCKER / "deepstream.Dockerfile").read_text()
    instructions = parse(text)
    final = final_stage(instructions)
    assert exec_form([i for i in final if i.keyword == "CMD"][-1].args) == [
        "deepstream-app", "-c", "deepstream_app_config.txt"]
    assert any(i.keyword == "ARG" and i.args.startswith("BUNDLE=") for i in final)
    from detforge.deploy.parser import CUSTOM_LIB, PARSER_DIR

    # the bundle's own parser source, built by its own Makefile
    assert any(i.keyword == "COPY" and f"${{BUNDLE}}/{PARSER_DIR}/" in i.args
               for i in instructions)
    assert any(i.keyword == "RUN" and "make -C /opt/parser" in i.args for i in instructions)
    copied = [i.args for i in final if i.keyword == "COPY" and "--from=parser" in i.args]
    assert copied and Path(copied[0].split()[-1]) == Path(CUSTOM_LIB).parent


def test_readme_documents_every_build() -> None:
    text = README.read_text()
    for name in FILES:
        assert f"docker build -f docker/{name}.Dockerfile" in text


@pytest.mark.parametrize(("text", "message"), [
    ("RUN echo hi\nFROM ubuntu:24.04\n", "RUN before the first FROM"),
    ("FROM ubuntu:24.04\nRUNN echo hi\n", "unknown instruction 'RUNN'"),
    ("FROM ubuntu:24.04\nCMD python -m http.server\n", "CMD must be in exec form"),
    ("FROM ubuntu:24.04\nENTRYPOINT ['detforge']\n", "ENTRYPOINT must be in exec form"),
    ("FROM ubuntu:24.04\nCOPY no/such/file /x\n", "source no/such/file does not exist"),
    ("FROM ubuntu:24.04\nCOPY ../secret /x\n", "outside the build context"),
    ("FROM ubuntu:24.04\nCOPY ${NOPE}/x /x\n", "uses ARG NOPE, which is not declared"),
    ("FROM ${BASE}\n", "FROM uses undeclared ARG BASE"),
    ("FROM ubuntu:24.04\nCOPY --from=ghost /a /b\n", "--from=ghost is neither"),
    ("FROM ubuntu:24.04\nRUN echo \\\n", "ends inside a continued instruction"),
    ("# only a comment\n", "no FROM instruction"),
], ids=["run-before-from", "bad-keyword", "shell-cmd", "single-quoted-entrypoint",
        "missing-source", "escaping-source", "undeclared-arg", "undeclared-from-arg",
        "unknown-stage", "dangling-continuation", "no-from"])
def test_checker_catches_broken_dockerfiles(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.Dockerfile"
    path.write_text(text)
    assert any(message in p for p in problems(path)), problems(path)


def test_parser_joins_continuations_and_skips_comments() -> None:
    text = ("# syntax=docker/dockerfile:1.7\nARG X=1\nFROM base:${X} AS one\n"
            "RUN a \\\n    # a comment inside\n    && b \\\n    && c\n"
            'CMD ["x", "y"]\n')
    parsed = parse(text)
    assert [(i.keyword, i.line) for i in parsed] == [("ARG", 2), ("FROM", 3), ("RUN", 4),
                                                    ("CMD", 8)]
    assert parsed[2].args == "a && b && c" and exec_form(parsed[3].args) == ["x", "y"]
