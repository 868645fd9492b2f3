"""The target registry is the one home of every target: no other module spells a target's
name or score column, every segment has one ranking target, labels follow populations."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.targets import TARGETS, ranking_target
from features.tiers import TierSettings
from models.segments import SEGMENT_NAMES
from tests.conftest import REPO

PACKAGES = ("features", "models", "flows", "serving", "bench")
HOME = REPO / "features" / "targets.py"
WORD = re.compile(r"[A-Za-z0-9_]+")


def _docstring_lines(tree: ast.AST) -> set[int]:
    """Lines of docstrings (prose may name a target; code may not)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                lines.update(range(value.lineno, (value.end_lineno or value.lineno) + 1))
    return lines


def spelled_names(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) for every key-like string literal (no spaces) or identifier of the file
    that is a target's name or score column (words of a literal: "dangol-repurchase" spells
    one)."""
    source = path.read_text(encoding="utf-8")
    docstrings = _docstring_lines(ast.parse(source))
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        line = token.start[0]
        if token.type == tokenize.STRING and line not in docstrings:
            # a key, name or URI ("dangol-repurchase", "models:/..."); prose with spaces
            # (messages, help text) may mention a target in words
            literal = token.string.strip("\"'rbfRBF")
            words = [] if re.search(r"\s", literal) else WORD.findall(literal)
        elif token.type == tokenize.NAME:
            words = [token.string]
        else:
            continue
        found += [(line, w) for w in dict.fromkeys(words) if w in names]
    return found


def test_no_module_but_the_registry_spells_a_target() -> None:
    names = set(TARGETS) | {spec.score_column for spec in TARGETS.values()}
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            if path == HOME:
                continue
            offenders += [
                f"{path.relative_to(REPO)}:{line}: {name}"
                for line, name in spelled_names(path, names)
            ]
    assert offenders == [], "target names outside features/targets.py:\n" + "\n".join(offenders)


def test_the_scan_would_see_a_spelled_target(tmp_path: Path) -> None:
    name = next(iter(TARGETS))
    bad = tmp_path / "bad.py"
    bad.write_text(
        f'"""Docs may say {name}."""\nMODEL = "dangol-{name}"\nHELP = "ranks by {name} score"\n'
    )
    assert spelled_names(bad, {name}) == [(2, name)]


def test_every_segment_has_exactly_one_ranking_target() -> None:
    claimed = [segment for spec in TARGETS.values() for segment in spec.segments]
    assert sorted(claimed) == sorted(SEGMENT_NAMES)
    for segment in SEGMENT_NAMES:
        assert ranking_target(segment).kind == "probability"


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_label_is_its_outcome_inside_the_population_and_nan_outside(name: str) -> None:
    spec = TARGETS[name]
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "orders_lifetime": rng.integers(0, 3, 200).astype(float),
            "tier": rng.integers(1, 6, 200),
            spec.outcome: rng.random(200) < 0.3,
        }
    )
    tiers = TierSettings()
    label = spec.label(frame, tiers)
    inside = spec.in_population(frame, tiers)
    assert 0 < inside.sum() < len(frame)
    assert label[~inside].isna().all()
    assert (label[inside] == frame.loc[inside, spec.outcome].astype(float)).all()
