"""SQL predicates for QIDO-RS matching (PS3.4 C.2.2.2), over one value expression.

Every value reaches Postgres as a bind parameter; only fixed SQL fragments and
column expressions chosen from closed tables are spliced into statements.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from skypacs.dicomweb.qido_params import Matcher, NameMatch, RangeMatch, Universal, ValueMatch

Kind = Literal["text", "int", "array"]

_REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}-")
_LIKE_SPECIAL = frozenset("\\%_")
#: Name columns whose folded value (``skypacs_fold``) is stored in a column of its own.
FOLDED_COLUMNS: Final = {"st.patient_name": "st.patient_name_folded"}
#: Characters separating name components and groups (PS3.5 6.2.1); spaces split words.
_NAME_SEPARATORS = "^= ,"


class Binds:
    """Positional bind parameters of one statement (``$1``, ``$2``...)."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def like_pattern(value: str) -> str:
    """A DICOM wildcard value as a LIKE pattern: ``*`` any run, ``?`` one character."""
    out = []
    for char in value:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append("\\" + char if char in _LIKE_SPECIAL else char)
    return "".join(out)


def _regex_literal(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def _regex_wildcards(text: str, any_char: str) -> str:
    out = []
    for char in text:
        if char == "*":
            out.append(any_char + "*")
        elif char == "?":
            out.append(any_char)
        else:
            out.append(_regex_literal(char))
    return "".join(out)


def _group_regex(group: str) -> str:
    """One component group: component-wise, absent trailing components match anything.

    A value without ``^`` but with ``*`` matches across the whole group, so that
    ``*smi*`` finds a family or a given name (PS3.4 C.2.2.2.4).
    """
    if "^" not in group and "*" in group:
        return _regex_wildcards(group, "[^=]")
    components = group.split("^")
    while components and not components[-1]:
        components.pop()
    if not components:
        return "[^=]*"
    body = "\\^".join(_regex_wildcards(c, "[^^=]") if c else "[^^=]*" for c in components)
    return body + "(\\^[^=]*)?"


def name_regex(value: str) -> str:
    """A regular expression for a PN query value against ``Alphabetic=Ideographic=Phonetic``.

    Without ``=`` the value may match any component group; with it, groups match
    in position and an empty query group matches anything (PS3.5 6.2.1.2).
    """
    if "=" not in value:
        return f"(^|=){_group_regex(value)}(=|$)"
    groups = value.split("=")
    body = "=".join(_group_regex(g) if g else "[^=]*" for g in groups)
    return f"^{body}(=.*)?$"


def fuzzy_regexes(value: str) -> list[str]:
    """One regex per word of ``value``: the word starts some component (PS3.18 §8.3.4.1).

    The caller folds both sides (case and accents); words may be in any order.
    """
    words = [w for w in _split_words(value) if w.strip("*?")]
    return [f"(^|[=^ ]){_regex_wildcards(word, '[^=^ ]')}" for word in words]


def _split_words(value: str) -> list[str]:
    words = [value]
    for separator in _NAME_SEPARATORS:
        words = [piece for word in words for piece in word.split(separator)]
    return [w for w in words if w]


def _value_predicate(expr: str, kind: Kind, matcher: ValueMatch, binds: Binds) -> str:
    alternatives = []
    exact, patterns = matcher.exact, matcher.patterns
    if kind == "array":
        if exact:
            alternatives.append(f"{expr} && {binds.add(list(exact))}::text[]")
        for pattern in patterns:
            param = binds.add(like_pattern(pattern))
            alternatives.append(f"EXISTS (SELECT 1 FROM unnest({expr}) AS m WHERE m LIKE {param})")
    else:
        cast = "int[]" if kind == "int" else "text[]"
        values: list[Any] = [int(v) for v in exact] if kind == "int" else list(exact)
        if len(values) == 1:
            alternatives.append(f"{expr} = {binds.add(values[0])}")
        elif values:
            alternatives.append(f"{expr} = ANY({binds.add(values)}::{cast})")
        text = f"{expr}::text" if kind == "int" else expr
        alternatives.extend(f"{text} LIKE {binds.add(like_pattern(p))}" for p in patterns)
    return _any(alternatives)


def _any(alternatives: list[str]) -> str:
    if not alternatives:
        return "FALSE"
    return alternatives[0] if len(alternatives) == 1 else "(" + " OR ".join(alternatives) + ")"


def _name_predicate(expr: str, matcher: NameMatch, binds: Binds) -> str:
    """PN matching is case-insensitive; fuzzy matching only adds folded prefix matches.

    Each value is one regular expression, which the trigram index can answer and
    whose selectivity Postgres estimates from the column's histogram. No second,
    looser pre-filter is added: the planner would multiply the two estimates as if
    independent and, taking a name kept by one study in ten for a rare one, read
    every match through the trigram index instead of walking the listing index.
    """
    alternatives = []
    for value in matcher.values:
        alternatives.append(f"{expr} ~* {binds.add(name_regex(value))}")
        if matcher.fuzzy:
            words = fuzzy_regexes(value)
            column = FOLDED_COLUMNS.get(expr, f"skypacs_fold({expr})")
            folded = [f"{column} ~ skypacs_fold({binds.add(w)})" for w in words]
            if folded:
                alternatives.append("(" + " AND ".join(folded) + ")")
    return _any(alternatives)


def range_predicate(expr: str, vr: str, matcher: RangeMatch, binds: Binds) -> str:
    """Range matching: ``low <= value`` and the value's prefix ``<= high`` (PS3.4 C.2.2.2.5).

    A high bound given to the day (or minute) includes that whole day (or minute).
    """
    value = f"skypacs_time({expr})" if vr == "TM" and not matcher.combined else expr
    clauses = []
    if matcher.low is not None:
        clauses.append(f"{value} >= {binds.add(matcher.low)}")
    if matcher.high is not None:
        high = matcher.high
        if vr == "DA" and not matcher.combined:
            clauses.append(f"{value} <= {binds.add(high)}")
        else:
            clauses.append(f"left({value}, {len(high)}) <= {binds.add(high)}")
    if not clauses:
        return f"{value} IS NOT NULL"
    return " AND ".join(clauses)


def predicate(expr: str, kind: Kind, vr: str, matcher: Matcher, binds: Binds) -> str | None:
    """The SQL condition for ``matcher`` on ``expr``; None for universal matching."""
    if isinstance(matcher, Universal):
        return None
    if isinstance(matcher, NameMatch):
        if kind == "array":
            condition = _name_predicate("m", matcher, binds)
            return f"EXISTS (SELECT 1 FROM unnest({expr}) AS m WHERE {condition})"
        return _name_predicate(expr, matcher, binds)
    if isinstance(matcher, RangeMatch):
        return range_predicate(expr, vr, matcher, binds)
    return _value_predicate(expr, kind, matcher, binds)
