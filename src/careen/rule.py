"""The rule language of the policy: which scan counts make an image break the policy.

A rule is a small boolean language over one image's scan counts::

    critical > 0 or high > 0 or medium >= 3

Grammar (keywords and names are case-insensitive)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | atom
    atom       := "(" expr ")" | comparison | "true" | "false"
    comparison := NAME OP INT          OP: > >= < <= == !=

The tokenizer and recursive-descent parser are hand-written: the language is tiny, and a
hand-written parser gives the column-precise errors (``PolicySyntaxError``) a person needs to
fix a rule typed on a command line or in a config file; no parsing library fits better. Rules
are data: nothing here ever reaches ``eval``.

Evaluation uses three-valued logic: a fixable-per-severity count the scan summary lacks is
*unknown*, and only if the rule's outcome depends on it is the verdict ``NEEDS_DETAILS`` (the
caller then fetches the vulnerability list and evaluates again). ``critical > 0 or
fixable_high > 0`` on an image with a critical finding needs no extra request.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from careen.errors import PolicySyntaxError

#: The seed's "medium >= 3 or high > 0", with critical (which Trivy reports above high) counted
#: at least as bad as high.
DEFAULT_RULE: Final = "critical > 0 or high > 0 or medium >= 3"
#: Limits that keep a hostile or mistyped rule from costing time or the parser's stack.
MAX_RULE_LENGTH: Final = 2000
MAX_NESTING: Final = 50

_SEVERITY_NAMES: Final = ("critical", "high", "medium", "low", "unknown", "none")
#: Every name a comparison may use, in the order they are listed in messages.
NAMES: Final = (
    *_SEVERITY_NAMES, "total",
    *(f"fixable_{s}" for s in _SEVERITY_NAMES if s != "none"), "fixable_total",
)
#: Names accepted as another spelling of a canonical name.
ALIASES: Final = {"fixable": "fixable_total"}
_KEYWORDS: Final = frozenset({"and", "or", "not", "true", "false"})

_OPERATORS: Final[dict[str, Callable[[int, int], bool]]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
_DIGITS: Final = frozenset("0123456789")
_NAME_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS: Final = _NAME_START | _DIGITS
_SPACE: Final = frozenset(" \t\r\n")


# -- syntax tree -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    name: str
    op: str
    value: int

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.value}"


@dataclass(frozen=True, slots=True)
class Constant:
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr

    def __str__(self) -> str:
        inner = str(self.operand)
        return f"not ({inner})" if isinstance(self.operand, And | Or) else f"not {inner}"


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]

    def __str__(self) -> str:
        return " and ".join(
            f"({o})" if isinstance(o, And | Or) else str(o) for o in self.operands
        )


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]

    def __str__(self) -> str:
        return " or ".join(f"({o})" if isinstance(o, Or) else str(o) for o in self.operands)


Expr = Comparison | Constant | Not | And | Or


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule. Two rules are equal when their trees are (the source text is kept for
    messages but does not count); ``str(rule)`` is a normalised text that parses back to an
    equal rule."""

    expression: Expr
    source: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Rule:
        return cls(_Parser(text).parse(), text)

    def __str__(self) -> str:
        return str(self.expression)

    def names_used(self) -> frozenset[str]:
        """The canonical names the rule compares (aliases resolved)."""
        found: set[str] = set()
        stack: list[Expr] = [self.expression]
        while stack:
            node = stack.pop()
            if isinstance(node, Comparison):
                found.add(node.name)
            elif isinstance(node, Not):
                stack.append(node.operand)
            elif isinstance(node, And | Or):
                stack.extend(node.operands)
        return frozenset(found)

    def evaluate(self, values: Mapping[str, int | None]) -> tuple[bool | None, tuple[str, ...]]:
        """Evaluate over ``values`` (name -> count, ``None`` when unknown).

        Returns the outcome (``None`` when it depends on an unknown count) and, when true, the
        comparisons that made it true, written with the actual counts (``"high 2 > 0"``).
        """
        return _evaluate(self.expression, values)


def parse_rule(text: str) -> Rule:
    """Parse a rule; raise :class:`PolicySyntaxError` naming the column of the problem."""
    return Rule.parse(text)


def _evaluate(expr: Expr, values: Mapping[str, int | None]) -> tuple[bool | None, tuple[str, ...]]:
    if isinstance(expr, Comparison):
        actual = values.get(expr.name)
        if actual is None:
            return None, ()
        outcome = _OPERATORS[expr.op](actual, expr.value)
        return outcome, ((f"{expr.name} {actual} {expr.op} {expr.value}",) if outcome else ())
    if isinstance(expr, Constant):
        return expr.value, (("true",) if expr.value else ())
    if isinstance(expr, Not):
        inner, _ = _evaluate(expr.operand, values)
        if inner is None:
            return None, ()
        return (not inner), (() if inner else (f"not ({_describe(expr.operand, values)})",))
    results = [_evaluate(operand, values) for operand in expr.operands]
    outcomes = [outcome for outcome, _ in results]
    if isinstance(expr, And):
        if False in outcomes:
            return False, ()
        if None in outcomes:
            return None, ()
        return True, tuple(m for _, matched in results for m in matched)
    if True in outcomes:
        return True, tuple(m for outcome, matched in results if outcome for m in matched)
    if None in outcomes:
        return None, ()
    return False, ()


def _describe(expr: Expr, values: Mapping[str, int | None]) -> str:
    """``expr`` written with the actual counts, for explaining a ``not``."""
    if isinstance(expr, Comparison):
        return f"{expr.name} {values.get(expr.name)} {expr.op} {expr.value}"
    if isinstance(expr, Constant):
        return str(expr)
    if isinstance(expr, Not):
        return f"not ({_describe(expr.operand, values)})"
    joiner = " and " if isinstance(expr, And) else " or "
    return joiner.join(f"({_describe(o, values)})" if isinstance(o, And | Or) else
                       _describe(o, values) for o in expr.operands)


# -- tokenizer and parser --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "int", "op", "(", ")", a keyword, or "end"
    text: str
    column: int  # 1-based


def _tokenize(rule: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(rule)
    while i < n:
        char = rule[i]
        column = i + 1
        if char in _SPACE:
            i += 1
        elif char in "()":
            tokens.append(_Token(char, char, column))
            i += 1
        elif char in "<>=!":
            two = rule[i:i + 2]
            if two in _OPERATORS:
                tokens.append(_Token("op", two, column))
                i += 2
            elif char in "<>":
                tokens.append(_Token("op", char, column))
                i += 1
            else:
                raise PolicySyntaxError(
                    rule, column, f"{char!r} is not an operator; did you mean '{char}='?"
                )
        elif char in _DIGITS:
            end = i
            while end < n and rule[end] in _DIGITS:
                end += 1
            if end < n and (rule[end] in _NAME_CHARS or rule[end] == "."):
                while end < n and (rule[end] in _NAME_CHARS or rule[end] == "."):
                    end += 1
                raise PolicySyntaxError(
                    rule, column, f"{rule[i:end]!r} is not a whole number"
                )
            tokens.append(_Token("int", rule[i:end], column))
            i = end
        elif char in _NAME_START:
            end = i
            while end < n and rule[end] in _NAME_CHARS:
                end += 1
            word = rule[i:end].lower()
            tokens.append(_Token(word if word in _KEYWORDS else "name", rule[i:end], column))
            i = end
        elif char == "-" and i + 1 < n and rule[i + 1] in _DIGITS:
            raise PolicySyntaxError(
                rule, column, "negative numbers are not allowed: counts are 0 or more"
            )
        else:
            raise PolicySyntaxError(rule, column, f"unexpected character {char!r}")
    tokens.append(_Token("end", "", n + 1))
    return tokens


def _describe_token(token: _Token) -> str:
    return "the end of the rule" if token.kind == "end" else repr(token.text)


class _Parser:
    """Recursive descent over the token list. Nesting is bounded by :data:`MAX_NESTING`, so
    the Python stack never runs out whatever the input."""

    def __init__(self, rule: str) -> None:
        if not isinstance(rule, str):
            raise PolicySyntaxError(repr(rule), 1, "a rule must be text")
        self.rule = rule
        if len(rule) > MAX_RULE_LENGTH:
            raise PolicySyntaxError(
                rule[:80] + "...", 1, f"rule longer than {MAX_RULE_LENGTH} characters"
            )
        if not rule.strip():
            raise PolicySyntaxError(
                rule, 1, f"empty rule; write a condition such as {DEFAULT_RULE!r}"
            )
        self.tokens = _tokenize(rule)
        self.position = 0
        self.depth = 0

    def fail(self, token: _Token, reason: str) -> PolicySyntaxError:
        return PolicySyntaxError(self.rule, token.column, reason)

    @property
    def current(self) -> _Token:
        return self.tokens[self.position]

    def advance(self) -> _Token:
        token = self.tokens[self.position]
        if token.kind != "end":
            self.position += 1
        return token

    def parse(self) -> Expr:
        expr = self.parse_or(None)
        token = self.current
        if token.kind == ")":
            raise self.fail(token, "unmatched ')'")
        if token.kind != "end":
            raise self.fail(
                token, f"unexpected {token.text!r} after a complete condition; "
                "join conditions with 'and' or 'or'"
            )
        return expr

    def parse_or(self, after: _Token | None) -> Expr:
        operands = [self.parse_and(after)]
        while self.current.kind == "or":
            operands.append(self.parse_and(self.advance()))
        return _flatten(Or, operands)

    def parse_and(self, after: _Token | None) -> Expr:
        operands = [self.parse_not(after)]
        while self.current.kind == "and":
            operands.append(self.parse_not(self.advance()))
        return _flatten(And, operands)

    def parse_not(self, after: _Token | None) -> Expr:
        if self.current.kind == "not":
            token = self.advance()
            self.enter(token)
            operand = self.parse_not(token)
            self.depth -= 1
            return Not(operand)
        return self.parse_atom(after)

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(token, f"rule nested deeper than {MAX_NESTING} levels")

    def parse_atom(self, after: _Token | None) -> Expr:
        token = self.advance()
        if token.kind == "(":
            self.enter(token)
            expr = self.parse_or(token)
            if self.current.kind != ")":
                if self.current.kind == "end":
                    raise self.fail(token, "'(' is never closed; add ')'")
                raise self.fail(
                    self.current, f"expected ')' or 'and'/'or', got {self.current.text!r}"
                )
            self.advance()
            self.depth -= 1
            return expr
        if token.kind in ("true", "false"):
            return Constant(token.kind == "true")
        if token.kind == "name":
            return self.parse_comparison(token)
        where = f" after {after.text!r}" if after is not None else ""
        if token.kind == ")":
            if after is None and self.position == 1:
                raise self.fail(token, "unmatched ')'")
            raise self.fail(token, f"missing condition{where} before ')'")
        raise self.fail(
            token, f"expected a comparison (such as 'high > 0'), 'not', 'true', 'false' or "
            f"'('{where}, got {_describe_token(token)}"
        )

    def parse_comparison(self, name_token: _Token) -> Comparison:
        name = _canonical_name(self.rule, name_token)
        op = self.advance()
        if op.kind != "op":
            raise self.fail(
                op, f"expected an operator ({', '.join(_OPERATORS)}) after "
                f"{name_token.text!r}, got {_describe_token(op)}"
            )
        number = self.advance()
        if number.kind != "int":
            raise self.fail(
                number, f"expected a whole number after {name_token.text} {op.text}, got "
                f"{_describe_token(number)}"
            )
        return Comparison(name, op.text, int(number.text))


def _canonical_name(rule: str, token: _Token) -> str:
    word = token.text.lower()
    if word in NAMES:
        return word
    if word in ALIASES:
        return ALIASES[word]
    close = difflib.get_close_matches(word, [*NAMES, *ALIASES], n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(NAMES)}"
    raise PolicySyntaxError(rule, token.column, f"unknown name {token.text!r}; {hint}")


def _flatten(kind: type[And] | type[Or], operands: list[Expr]) -> Expr:
    """``(a or b) or c`` is ``a or b or c``: one node per run, so ``str`` round-trips."""
    if len(operands) == 1:
        return operands[0]
    flat: list[Expr] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return kind(tuple(flat))
