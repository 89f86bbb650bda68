"""The policy language, verdicts and the selection of images to rebuild."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from careen.errors import ConfigError, PolicySyntaxError
from careen.inventory import Image
from careen.policy import (
    DEFAULT_RULE,
    MAX_NESTING,
    MAX_RULE_LENGTH,
    NAMES,
    And,
    Comparison,
    Constant,
    Not,
    Or,
    Policy,
    Rule,
    UnscannedAction,
    VerdictKind,
    parse_rule,
    select_vulnerable,
)
from careen.reference import ImageReference
from careen.scan import ScanStatus, ScanSummary, SeverityCounts
from tests.strategies import concatenations

DIGEST = "sha256:" + "a" * 64


def make_image(
    ref: str = "library/grafana:4.1.2", *, status: ScanStatus = ScanStatus.SUCCESS,
    fixable: SeverityCounts | None = None, fixable_total: int | None = None, **counts: int,
) -> Image:
    scan = ScanSummary(
        status=status,
        counts=SeverityCounts(**counts) if status is ScanStatus.SUCCESS else None,
        fixable=fixable, fixable_total=fixable_total,
    )
    return Image(reference=ImageReference.parse(ref), digest=DIGEST, scan=scan)


def scanned(counts: dict[str, int]) -> Image:
    return Image(ImageReference.parse("library/grafana:4.1.2"), DIGEST,
                 ScanSummary(ScanStatus.SUCCESS, SeverityCounts(**counts)))


def judge(rule: str, **counts: int) -> tuple[VerdictKind, tuple[str, ...]]:
    verdict = Policy(parse_rule(rule)).evaluate(scanned(counts))
    return verdict.kind, verdict.matched


# -- the seed's rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "kind", "reason"),
    [
        ({"high": 6}, VerdictKind.VIOLATES, "high 6 > 0"),
        ({"medium": 2}, VerdictKind.PASSES, "passes (critical 0, high 0, medium 2)"),
        ({"medium": 3}, VerdictKind.VIOLATES, "medium 3 >= 3"),
        ({"critical": 1}, VerdictKind.VIOLATES, "critical 1 > 0"),
        ({"low": 40, "unknown": 3, "none": 9}, VerdictKind.PASSES,
         "passes (critical 0, high 0, medium 0)"),
        ({"high": 2, "medium": 5}, VerdictKind.VIOLATES, "high 2 > 0; medium 5 >= 3"),
    ],
)
def test_default_rule_is_the_seeds_rule_with_critical(
    counts: dict[str, int], kind: VerdictKind, reason: str,
) -> None:
    verdict = Policy().evaluate(scanned(counts))
    assert verdict.kind is kind
    assert verdict.reason == reason
    assert verdict.selected is (kind is VerdictKind.VIOLATES)


def test_default_policy_uses_default_rule() -> None:
    assert Policy().rule == parse_rule(DEFAULT_RULE)
    assert Policy.from_settings(None).rule == parse_rule(DEFAULT_RULE)
    assert str(Policy().rule) == DEFAULT_RULE


# -- the language ----------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    rule = "high > 0 or medium > 0 and low > 0"
    assert parse_rule(rule) == parse_rule("high > 0 or (medium > 0 and low > 0)")
    # Read as (high or medium) and low, this would be false.
    assert judge(rule, high=1) == (VerdictKind.VIOLATES, ("high 1 > 0",))
    assert judge(rule, medium=1)[0] is VerdictKind.PASSES
    assert judge(rule, medium=1, low=1) == (VerdictKind.VIOLATES, ("medium 1 > 0", "low 1 > 0"))


def test_parentheses_override_precedence() -> None:
    rule = "(high > 0 or medium > 0) and low > 0"
    assert judge(rule, high=1)[0] is VerdictKind.PASSES
    assert judge(rule, high=1, low=2) == (VerdictKind.VIOLATES, ("high 1 > 0", "low 2 > 0"))


def test_not_binds_tighter_than_and() -> None:
    rule = parse_rule("not high > 0 and low > 0")
    assert rule == Rule(And((Not(Comparison("high", ">", 0)), Comparison("low", ">", 0))))
    assert judge("not high > 0 and low > 0", low=1) == (
        VerdictKind.VIOLATES, ("not (high 0 > 0)", "low 1 > 0"),
    )
    assert judge("not high > 0 and low > 0", high=1, low=1)[0] is VerdictKind.PASSES
    assert judge("not (high > 0 or low > 0)", medium=1) == (
        VerdictKind.VIOLATES, ("not (high 0 > 0 or low 0 > 0)",),
    )
    assert judge("not not high > 0", high=1)[0] is VerdictKind.VIOLATES


@pytest.mark.parametrize(
    ("rule", "counts", "outcome"),
    [
        ("high == 2", {"high": 2}, True), ("high == 2", {"high": 3}, False),
        ("high != 2", {"high": 3}, True), ("high < 2", {"high": 1}, True),
        ("high <= 2", {"high": 2}, True), ("high <= 2", {"high": 3}, False),
        ("total >= 10", {"low": 5, "none": 5}, True), ("total >= 10", {"low": 9}, False),
        ("none > 0", {"none": 1}, True), ("unknown > 0", {"unknown": 1}, True),
        ("true", {}, True), ("false", {"critical": 9}, False),
    ],
)
def test_operators_names_and_constants(rule: str, counts: dict[str, int], outcome: bool) -> None:
    kind, _ = judge(rule, **counts)
    assert kind is (VerdictKind.VIOLATES if outcome else VerdictKind.PASSES)


def test_keywords_and_names_are_case_insensitive_and_str_normalises() -> None:
    rule = parse_rule("HIGH>0 Or (Medium >=3 AND NOT Fixable!=0)\tor TRUE")
    assert str(rule) == "high > 0 or medium >= 3 and not fixable_total != 0 or true"
    assert rule.source == "HIGH>0 Or (Medium >=3 AND NOT Fixable!=0)\tor TRUE"


def test_nested_or_and_and_are_flattened() -> None:
    assert parse_rule("(high > 0 or low > 0) or (medium > 0)").expression == Or((
        Comparison("high", ">", 0), Comparison("low", ">", 0), Comparison("medium", ">", 0),
    ))
    assert parse_rule("((true))").expression == Constant(True)


def test_names_used_resolves_aliases() -> None:
    rule = parse_rule("critical > 0 or (fixable > 2 and not fixable_high > 0) or true")
    assert rule.names_used() == {"critical", "fixable_total", "fixable_high"}


@pytest.mark.parametrize(
    ("rule", "column", "fragment"),
    [
        ("", 1, "empty rule"),
        ("   ", 1, "empty rule"),
        ("hihg > 0", 1, "did you mean 'high'?"),
        ("high > 0 or meduim >= 3", 13, "did you mean 'medium'?"),
        ("high > 0 or fixable_hihg > 0", 13, "did you mean 'fixable_high'?"),
        ("high >", 7, "expected a whole number after high >, got the end of the rule"),
        ("high > or low > 0", 8, "expected a whole number"),
        ("high 3", 6, "expected an operator"),
        ("high > low", 8, "got 'low'"),
        ("high > 0 or", 12, "after 'or', got the end of the rule"),
        ("and high > 0", 1, "expected a comparison"),
        ("high > 0 and and low > 0", 14, "after 'and'"),
        ("not", 4, "after 'not'"),
        ("(high > 0", 1, "'(' is never closed"),
        ("((high > 0) or low > 0", 1, "'(' is never closed"),
        ("high > 0)", 9, "unmatched ')'"),
        (")", 1, "unmatched ')'"),
        ("()", 2, "missing condition after '('"),
        ("(high > 0 low > 0)", 11, "expected ')'"),
        ("high > 0 low > 0", 10, "after a complete condition"),
        ("high > 3.5", 8, "'3.5' is not a whole number"),
        ("high > 3x", 8, "not a whole number"),
        ("high > -1", 8, "negative numbers are not allowed"),
        ("high = 3", 6, "did you mean '=='?"),
        ("high ! 3", 6, "did you mean '!='?"),
        ("high > 0 && low > 0", 10, "unexpected character '&'"),
        ("high > ٣", 8, "unexpected character"),
        ("3 > high", 1, "got '3'"),
    ],
)
def test_errors_name_the_column(rule: str, column: int, fragment: str) -> None:
    with pytest.raises(PolicySyntaxError) as caught:
        parse_rule(rule)
    assert caught.value.column == column
    assert fragment in caught.value.reason
    assert caught.value.rule == rule


def test_unknown_name_without_close_match_lists_the_valid_names() -> None:
    with pytest.raises(PolicySyntaxError, match="use one of critical, high") as caught:
        parse_rule("zz > 1")
    assert caught.value.column == 1


def test_rule_length_is_limited() -> None:
    rule = " or ".join(["high > 0"] * 300)
    assert len(rule) > MAX_RULE_LENGTH
    with pytest.raises(PolicySyntaxError, match=f"longer than {MAX_RULE_LENGTH}"):
        parse_rule(rule)


def test_nesting_is_limited_without_recursion_error() -> None:
    assert parse_rule("(" * MAX_NESTING + "true" + ")" * MAX_NESTING).expression == Constant(True)
    with pytest.raises(PolicySyntaxError, match="nested deeper") as caught:
        parse_rule("(" * 900 + "true" + ")" * 900)
    assert caught.value.column == MAX_NESTING + 1
    with pytest.raises(PolicySyntaxError, match="nested deeper") as caught:
        parse_rule("not " * 400 + "true")
    assert caught.value.column == MAX_NESTING * 4 + 1


# -- hypothesis ------------------------------------------------------------------------------

_spaces = st.sampled_from([" ", "  ", "\t"])


def _case(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), word.capitalize()])


def _any_case(words: list[str]) -> st.SearchStrategy[str]:
    """The values ``st.sampled_from(words).flatmap(_case)`` gives, with the same distribution
    (a word, then one of its three spellings), without building a strategy per draw."""
    return st.builds(lambda word, spelling: spelling(word), st.sampled_from(words),
                     st.sampled_from([_as_written, str.upper, str.capitalize]))


def _as_written(word: str) -> str:
    return word


_comparisons = st.builds(
    lambda name, s1, op, s2, value: f"{name}{s1}{op}{s2}{value}",
    _any_case([*NAMES, "fixable"]),
    st.sampled_from(["", " "]), st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
    st.sampled_from(["", " "]), st.integers(min_value=0, max_value=10**6),
)
_atoms = st.one_of(_comparisons, _any_case(["true", "false"]))


def rules(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return _atoms
    sub = st.deferred(lambda: rules(depth - 1))
    return st.one_of(
        _atoms,
        sub.map(lambda s: f"({s})"),
        st.tuples(_case("not"), sub).map(lambda t: f"{t[0]} {t[1]}"),
        st.tuples(sub, _spaces, _case("or"), _spaces, sub).map("".join),
        st.tuples(sub, _spaces, _case("and"), _spaces, sub).map("".join),
    )


@given(rules(4))
def test_generated_rules_parse_and_str_round_trips(text: str) -> None:
    rule = parse_rule(text)
    again = parse_rule(str(rule))
    assert again == rule
    assert str(again) == str(rule)


@given(rules(3), st.dictionaries(st.sampled_from(NAMES), st.integers(0, 20)))
def test_normalised_text_evaluates_the_same(text: str, values: dict[str, int]) -> None:
    full = {name: values.get(name, 0) for name in NAMES}
    assert parse_rule(text).evaluate(full) == parse_rule(str(parse_rule(text))).evaluate(full)


_token_soup = concatenations(["high", "fixable", "hihg", "and", "or", "not", "true", "(", ")",
                              ">", ">=", "=", "!", "==", "3", "-1", "2.5", "#", ""],
                             max_size=30, sep=" ")


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=120), _token_soup))
def test_arbitrary_text_raises_only_policy_syntax_error(text: str) -> None:
    try:
        rule = parse_rule(text)
    except PolicySyntaxError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        assert parse_rule(str(rule)) == rule


# -- fixable counts --------------------------------------------------------------------------


def test_fixable_only_evaluates_the_rule_over_fixable_counts() -> None:
    policy = Policy(parse_rule(DEFAULT_RULE), fixable_only=True)
    no_fix = make_image(high=5, medium=4, fixable=SeverityCounts(), fixable_total=0)
    assert policy.evaluate(no_fix).kind is VerdictKind.PASSES
    some_fix = make_image(high=5, fixable=SeverityCounts(high=2))
    verdict = policy.evaluate(some_fix)
    assert verdict.kind is VerdictKind.VIOLATES
    assert verdict.matched == ("high 2 > 0",)
    assert verdict.reason == "high 2 > 0 (fixable findings only)"


def test_fixable_only_without_details_needs_details() -> None:
    policy = Policy(parse_rule(DEFAULT_RULE), fixable_only=True)
    verdict = policy.evaluate(make_image(high=5, fixable_total=3))
    assert verdict.kind is VerdictKind.NEEDS_DETAILS
    assert "critical, high, medium" in verdict.reason
    assert not verdict.selected


def test_fixable_per_severity_without_details_needs_details_then_resolves() -> None:
    policy = Policy.from_settings("fixable_high > 0")
    summary_only = make_image(high=2, fixable_total=2)
    verdict = policy.evaluate(summary_only)
    assert verdict.kind is VerdictKind.NEEDS_DETAILS
    assert "fixable_high" in verdict.reason
    detailed = Image(summary_only.reference, summary_only.digest,
                     summary_only.scan.with_fixable(SeverityCounts(high=1, low=1)))
    assert policy.evaluate(detailed).matched == ("fixable_high 1 > 0",)


def test_details_are_not_needed_when_the_known_counts_decide() -> None:
    policy = Policy.from_settings("critical > 0 or fixable_high > 0")
    assert policy.evaluate(make_image(critical=1)).kind is VerdictKind.VIOLATES
    assert policy.evaluate(make_image(high=1)).kind is VerdictKind.NEEDS_DETAILS
    strict = Policy.from_settings("critical > 0 and fixable_high > 0")
    assert strict.evaluate(make_image(high=1)).kind is VerdictKind.PASSES


def test_fixable_total_from_the_summary_is_enough_for_fixable() -> None:
    policy = Policy.from_settings("fixable > 2")
    assert policy.evaluate(make_image(high=9, fixable_total=3)).kind is VerdictKind.VIOLATES
    assert policy.evaluate(make_image(high=9, fixable_total=2)).kind is VerdictKind.PASSES
    assert policy.evaluate(make_image(high=9)).kind is VerdictKind.NEEDS_DETAILS


# -- ignore and unscanned --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "ref", "ignored"),
    [
        ("library/debug-*", "library/debug-tools:1.0", True),
        ("library/debug-*", "library/httpd:2.4", False),
        ("*:latest", "library/apache-php:latest", True),
        ("*:latest", "library/apache-php:5.6", False),
        ("library/httpd", "library/httpd:2.4.6", True),
        ("library/httpd", "library/httpd-extra:1", False),
        ("harbor.example.com/library/*", "harbor.example.com/library/httpd:2.4", True),
        ("harbor.example.com/library/*", "library/httpd:2.4", False),
        ("library/httpd:2.4", "harbor.example.com/library/httpd:2.4", True),
        ("harbor.example.com/*:latest", "harbor.example.com/library/x", True),
        ("library/x@sha256:*", f"library/x@{DIGEST}", True),
    ],
)
def test_ignore_globs(pattern: str, ref: str, ignored: bool) -> None:
    policy = Policy.from_settings(None, ignore=[pattern])
    verdict = policy.evaluate(make_image(ref, high=3))
    if ignored:
        assert verdict.kind is VerdictKind.IGNORED
        assert verdict.reason == f"ignored by policy.ignore {pattern!r}"
        assert not verdict.selected
    else:
        assert verdict.kind is VerdictKind.VIOLATES


def test_ignore_wins_over_unscanned() -> None:
    policy = Policy.from_settings(None, ignore=["library/*"], unscanned="select")
    image = make_image("library/x:1", status=ScanStatus.NOT_SCANNED)
    assert policy.evaluate(image).kind is VerdictKind.IGNORED


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (ScanStatus.NOT_SCANNED, VerdictKind.NOT_SCANNED, "never scanned"),
        (ScanStatus.ERROR, VerdictKind.SCAN_FAILED, "scan error"),
        (ScanStatus.STOPPED, VerdictKind.SCAN_FAILED, "scan stopped"),
        (ScanStatus.PENDING, VerdictKind.SCAN_IN_PROGRESS, "scan pending"),
        (ScanStatus.RUNNING, VerdictKind.SCAN_IN_PROGRESS, "scan running"),
    ],
)
@pytest.mark.parametrize("action", list(UnscannedAction))
def test_unscanned_images_are_never_called_clean(
    status: ScanStatus, kind: VerdictKind, reason: str, action: UnscannedAction,
) -> None:
    policy = Policy.from_settings("true" if action is UnscannedAction.IGNORE else None,
                                  unscanned=action.value)
    verdict = policy.evaluate(make_image(status=status))
    assert verdict.kind is kind
    assert verdict.reason == reason
    assert verdict.selected is (action is UnscannedAction.SELECT)
    assert verdict.listed is (action is not UnscannedAction.IGNORE)


def test_success_without_counts_is_a_failed_scan() -> None:
    image = Image(ImageReference.parse("library/x:1"), DIGEST,
                  ScanSummary(status=ScanStatus.SUCCESS, counts=None))
    verdict = Policy().evaluate(image)
    assert verdict.kind is VerdictKind.SCAN_FAILED
    assert "no severity counts" in verdict.reason


# -- settings --------------------------------------------------------------------------------


def test_from_settings_builds_a_policy() -> None:
    policy = Policy.from_settings("high > 1", True, [" library/debug-* ", "*:latest"], "SELECT")
    assert policy == Policy(parse_rule("high > 1"), True, ("library/debug-*", "*:latest"),
                            UnscannedAction.SELECT)


def test_from_settings_rejects_a_bad_unscanned_value() -> None:
    with pytest.raises(ConfigError, match="unknown value 'skip'; use one of report, select, "
                                          "ignore") as caught:
        Policy.from_settings(None, unscanned="skip", source="careen.toml")
    assert caught.value.key == "policy.unscanned"
    assert str(caught.value).startswith("careen.toml: policy.unscanned: ")


@pytest.mark.parametrize("ignore", ["library/*", ["ok/*", ""], ["a b"], ["ok", 3]])
def test_from_settings_rejects_bad_ignore_patterns(ignore: object) -> None:
    with pytest.raises(ConfigError) as caught:
        Policy.from_settings(None, ignore=ignore)  # type: ignore[arg-type]
    assert caught.value.key == "policy.ignore"


def test_from_settings_rejects_a_bad_rule_with_its_column() -> None:
    with pytest.raises(PolicySyntaxError) as caught:
        Policy.from_settings("high > 0 or hihg > 0")
    assert caught.value.column == 13


def test_from_settings_rejects_a_non_boolean_fixable_only() -> None:
    with pytest.raises(ConfigError, match=r"policy\.fixable_only"):
        Policy.from_settings(None, "yes")  # type: ignore[arg-type]


# -- selection -------------------------------------------------------------------------------


def test_select_vulnerable_sorts_images_and_only_counts_passes() -> None:
    images = [
        make_image("library/activemq:5.14.4", high=6),
        make_image("library/alpine:latest", low=1, fixable=SeverityCounts(low=1)),
        make_image("library/alpine:3.6", high=1, fixable=SeverityCounts()),
        make_image("library/debug-tools:1", critical=3),
        make_image("library/new:1", status=ScanStatus.NOT_SCANNED),
        make_image("library/broken:1", status=ScanStatus.ERROR),
        make_image("library/busy:1", status=ScanStatus.RUNNING),
        make_image("library/fixes:1", high=1),
    ]
    consumed: list[str] = []

    def stream() -> Iterator[Image]:
        for image in images:
            consumed.append(image.reference.short)
            yield image

    policy = Policy.from_settings("critical > 0 or high > 1 or fixable_high > 0",
                                  ignore=["library/debug-*"])
    selection = select_vulnerable(stream(), policy)
    assert len(consumed) == len(images)
    assert [i.reference.short for i, _ in selection.selected] == ["library/activemq:5.14.4"]
    assert selection.passed_count == 2
    assert [i.reference.short for i, _ in selection.ignored] == ["library/debug-tools:1"]
    assert [i.reference.short for i, _ in selection.not_scanned] == ["library/new:1"]
    assert [i.reference.short for i, _ in selection.scan_failed] == ["library/broken:1"]
    assert [i.reference.short for i, _ in selection.scan_in_progress] == ["library/busy:1"]
    assert [i.reference.short for i, _ in selection.needs_details] == ["library/fixes:1"]
    assert selection.total == len(images)


def test_selection_with_unscanned_select_and_ignore() -> None:
    images = [make_image("library/new:1", status=ScanStatus.NOT_SCANNED),
              make_image("library/broken:1", status=ScanStatus.STOPPED),
              make_image("library/ok:1")]
    chosen = select_vulnerable(images, Policy.from_settings(None, unscanned="select"))
    assert [v.kind for _, v in chosen.selected] == [VerdictKind.NOT_SCANNED,
                                                    VerdictKind.SCAN_FAILED]
    hidden = select_vulnerable(images, Policy.from_settings(None, unscanned="ignore"))
    assert hidden.selected == hidden.not_scanned == hidden.scan_failed == []
    assert hidden.unlisted_unscanned_count == 2
    assert hidden.passed_count == 1
    assert hidden.total == 3
