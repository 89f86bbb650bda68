"""Policy.evaluate's fast path (values worked out only for the names a rule uses, once per
policy) gives exactly the verdicts of the straightforward evaluation over every name."""

from __future__ import annotations

import copy
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from careen.inventory import Image
from careen.policy import NAMES, Policy, Rule, Verdict, VerdictKind
from careen.reference import ImageReference
from careen.scan import ScanStatus, ScanSummary, SeverityCounts

_OPS = (">", ">=", "<", "<=", "==", "!=")
_comparison = st.tuples(st.sampled_from((*NAMES, "fixable")), st.sampled_from(_OPS),
                        st.integers(0, 6)).map(lambda t: f"{t[0]} {t[1]} {t[2]}")


def _rules(depth: int) -> st.SearchStrategy[str]:
    atoms = st.one_of(_comparison, st.sampled_from(["true", "false"]))
    if depth == 0:
        return atoms
    sub = st.deferred(lambda: _rules(depth - 1))
    return st.one_of(atoms, sub.map(lambda s: f"not ({s})"),
                     st.tuples(sub, st.sampled_from([" or ", " and "]), sub).map(
                         lambda t: f"({t[0]}){t[1]}({t[2]})"))


_counts = st.builds(SeverityCounts, *(st.integers(0, 5) for _ in range(6)))


def reference_verdict(policy: Policy, image: Image) -> Verdict:
    """The evaluation as it was before the fast path: every name's value, then the rule."""
    scan = image.scan
    assert scan.status is ScanStatus.SUCCESS and scan.counts is not None
    values = policy._values(scan.counts, scan.fixable, scan.fixable_total)
    outcome, matched = policy.rule.evaluate(values)
    suffix = " (fixable findings only)" if policy.fixable_only else ""
    if outcome is None:
        missing = sorted(n for n in policy.rule.names_used() if values.get(n) is None)
        return Verdict(
            VerdictKind.NEEDS_DETAILS,
            f"the scan summary lacks fixable counts for {', '.join(missing)}{suffix}; "
            "fetch the vulnerability list and evaluate again")
    if outcome:
        return Verdict(VerdictKind.VIOLATES, "; ".join(matched) + suffix, matched)
    shown = ", ".join(f"{n} {values[n]}" for n in NAMES if n in policy.rule.names_used())
    return Verdict(VerdictKind.PASSES, f"passes ({shown or 'no counts used'}){suffix}")


@given(_rules(3), st.booleans(), _counts, st.one_of(st.none(), _counts),
       st.one_of(st.none(), st.integers(0, 9)))
def test_fast_evaluation_matches_the_reference(
        text: str, fixable_only: bool, counts: SeverityCounts, fixable: SeverityCounts | None,
        fixable_total: int | None) -> None:
    policy = Policy(Rule.parse(text), fixable_only=fixable_only)
    scan = ScanSummary(ScanStatus.SUCCESS, counts=counts, fixable=fixable,
                       fixable_total=fixable_total)
    image = Image(ImageReference.parse("library/app:1"), None, scan)
    assert policy.evaluate(image) == reference_verdict(policy, image)


def test_passing_text_lists_the_used_counts_in_name_order() -> None:
    policy = Policy(Rule.parse("medium >= 3 or critical > 0 or fixable > 5"))
    image = Image(ImageReference.parse("library/app:1"), None,
                  ScanSummary(ScanStatus.SUCCESS, counts=SeverityCounts(medium=1),
                              fixable_total=2))
    verdict = policy.evaluate(image)
    assert verdict.kind is VerdictKind.PASSES
    assert verdict.reason == "passes (critical 0, medium 1, fixable_total 2)"


def test_replaced_and_copied_policies_use_their_own_rule() -> None:
    image = Image(ImageReference.parse("library/app:1"), None,
                  ScanSummary(ScanStatus.SUCCESS, counts=SeverityCounts(low=4)))
    policy = Policy()
    assert policy.evaluate(image).kind is VerdictKind.PASSES
    stricter = replace(policy, rule=Rule.parse("low > 3"))
    assert stricter.evaluate(image).kind is VerdictKind.VIOLATES
    assert stricter != policy and replace(stricter, rule=policy.rule) == policy
    again = copy.deepcopy(stricter)
    assert again == stricter and again.evaluate(image).reason == "low 4 > 3"
