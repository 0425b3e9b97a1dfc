"""Promotion gates of the MLflow registry: pure functions over plain numbers.

Detectors (Wolleb et al. 2022 guided maps, Baugh et al. 2024 image-conditioned maps) are promoted
when their *validation* pixel AP and image AUROC are not below the current champion's (minus
``max_pixel_ap_drop`` / ``max_image_auroc_drop``, 0 by default). Classifiers trained on cleaned
data are promoted when, against the raw-data classifier of the same seed (Bissoto et al. trap set,
Winkler et al. counterfactual insertion):

- trap AUROC is not below the raw model's (minus ``max_trap_auroc_drop``, 0 by default);
- the counterfactual flip rate is at most ``max_flip_rate``; or, with ``max_excess_flip_rate``
  set, its *excess* over the trap-free ("natural") classifier of the same variant, recipe and seed
  is at most that: a classifier trained without any planted shortcut also flips some predictions
  when an artifact is pasted (fragility, not a shortcut), and only the excess is the shortcut's;
- in-distribution AUROC is at most ``max_auroc_drop`` (0.02) below the raw model's.

Every gate returns its numbers, so a :class:`Decision` says which gate passed or failed and why.
A champion is only replaced by a version that passes its gates *and* ranks strictly higher
(:func:`choose_aliases`), so rerunning with the same numbers changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class DetectorMetrics:
    """Validation-split figures of a detector: pixel average precision and image-level AUROC."""

    pixel_ap: float | None
    image_auroc: float | None
    split: str = "val"  # the split the figures come from (the gates are meant for "val")

    def rank(self) -> tuple[float, ...] | None:
        return _rank((self.pixel_ap, self.image_auroc))


@dataclass(frozen=True, kw_only=True)
class ClassifierMetrics:
    """Test figures of a classifier: in-distribution AUROC, trap-set AUROC, counterfactual flip rate."""

    id_auroc: float | None
    trap_auroc: float | None
    flip_rate: float | None
    excess_flip_rate: float | None = None

    def rank(self) -> tuple[float, ...] | None:
        """Higher is better: trap AUROC first, then in-distribution AUROC, then fewer flips."""
        if self.flip_rate is None:
            return None
        return _rank((self.trap_auroc, self.id_auroc, -self.flip_rate))


@dataclass(frozen=True, kw_only=True)
class DetectorGates:
    max_pixel_ap_drop: float = 0.0
    max_image_auroc_drop: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ClassifierGates:
    max_flip_rate: float = 0.2
    max_excess_flip_rate: float | None = None
    max_auroc_drop: float = 0.02
    max_trap_auroc_drop: float = 0.0


@dataclass(frozen=True, kw_only=True)
class GateResult:
    """One gate: ``value`` compared with ``threshold`` (``value >= threshold`` or ``<=`` for bounds)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str


@dataclass(frozen=True, kw_only=True)
class Decision:
    passed: bool
    gates: tuple[GateResult, ...] = field(default_factory=tuple)
    note: str = ""

    @property
    def reason(self) -> str:
        """``passed gates: <every gate>``, or ``failed gates: <the failing ones>; passed: <the rest>``."""
        head = "passed gates" if self.passed else "failed gates"
        failed = [g.message for g in self.gates if not g.passed]
        kept = [g.message for g in self.gates if g.passed]
        if self.passed or not failed:
            body = "; ".join(g.message for g in self.gates)
        else:
            body = "; ".join(failed) + (f"; passed: {'; '.join(kept)}" if kept else "")
        return f"{head}: {body}" + (f" ({self.note})" if self.note else "") if body else f"{head} ({self.note})"


def _rank(values: tuple[float | None, ...]) -> tuple[float, ...] | None:
    return None if any(_missing(v) for v in values) else tuple(float(v) for v in values)


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def at_least(name: str, value: float | None, reference: float | None, *, slack: float, ref_name: str) -> GateResult:
    """Gate ``value >= reference - slack``; a missing number fails the gate."""
    if _missing(value) or _missing(reference):
        missing = name if _missing(value) else ref_name
        return GateResult(name=name, passed=False, value=value, threshold=None,
                          message=f"{name}: {missing} is missing, cannot compare")
    threshold = reference - slack
    ok = value >= threshold - 1e-12
    slack_txt = f" - {slack:g}" if slack else ""
    return GateResult(name=name, passed=ok, value=value, threshold=threshold,
                      message=f"{name} {value:.4f} {'>=' if ok else '<'} {ref_name} {reference:.4f}{slack_txt}")


def at_most(name: str, value: float | None, bound: float) -> GateResult:
    """Gate ``value <= bound``; a missing number fails the gate."""
    if _missing(value):
        return GateResult(name=name, passed=False, value=value, threshold=bound,
                          message=f"{name}: missing, cannot compare with the bound {bound:g}")
    ok = value <= bound + 1e-12
    return GateResult(name=name, passed=ok, value=value, threshold=bound,
                      message=f"{name} {value:.4f} {'<=' if ok else '>'} bound {bound:g}")


def detector_decision(candidate: DetectorMetrics, champion: DetectorMetrics | None, *,
                      gates: DetectorGates, champion_version: str | None = None) -> Decision:
    """Gate a detector against the current champion; with no champion it passes on complete metrics."""
    if champion is None:
        rank = candidate.rank()
        if rank is None:
            return Decision(passed=False, note=f"{candidate.split} pixel_ap / image_auroc missing")
        return Decision(passed=True, note=f"no champion yet; {candidate.split} pixel_ap {rank[0]:.4f}, "
                                          f"image_auroc {rank[1]:.4f}")
    ref = f"champion v{champion_version}" if champion_version else "champion"
    if champion.split != candidate.split:
        ref += f" ({champion.split})"
    results = (
        at_least(f"{candidate.split} pixel_ap", candidate.pixel_ap, champion.pixel_ap,
                 slack=gates.max_pixel_ap_drop, ref_name=ref),
        at_least(f"{candidate.split} image_auroc", candidate.image_auroc, champion.image_auroc,
                 slack=gates.max_image_auroc_drop, ref_name=ref),
    )
    return Decision(passed=all(g.passed for g in results), gates=results)


def classifier_decision(candidate: ClassifierMetrics, raw: ClassifierMetrics | None, *,
                        gates: ClassifierGates, raw_label: str = "raw") -> Decision:
    """Gate a cleaned-data classifier against the raw-data classifier (same seed)."""
    if raw is None:
        raw = ClassifierMetrics(id_auroc=None, trap_auroc=None, flip_rate=None)
    results = (
        at_least("trap_auroc", candidate.trap_auroc, raw.trap_auroc, slack=gates.max_trap_auroc_drop,
                 ref_name=raw_label),
        (at_most("flip_rate", candidate.flip_rate, gates.max_flip_rate) if gates.max_excess_flip_rate is None
         else at_most("excess_flip_rate", candidate.excess_flip_rate, gates.max_excess_flip_rate)),
        at_least("id_auroc", candidate.id_auroc, raw.id_auroc, slack=gates.max_auroc_drop, ref_name=raw_label),
    )
    return Decision(passed=all(g.passed for g in results), gates=results)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A candidate version's gate result and rank (``None``: cannot be ranked)."""

    version: str
    passed: bool
    rank: tuple[float, ...] | None


@dataclass(frozen=True, kw_only=True)
class AliasChoice:
    champion: str | None
    challenger: str | None
    why: str


def choose_aliases(*, current_champion: str | None, champion_rank: tuple[float, ...] | None,
                   outcomes: list[Outcome]) -> AliasChoice:
    """Pick ``champion`` and ``challenger`` without ever dropping a champion for a version not better.

    The best passing candidate (highest rank; ties go to the current champion, then the lower
    version) becomes champion when there is none, or when it ranks strictly above the current
    champion's recorded rank. ``challenger`` is the best remaining candidate (passing first).
    """
    def key(o: Outcome):
        return (o.rank, o.version == current_champion, -int(o.version))

    passing = [o for o in outcomes if o.passed and o.rank is not None]
    best = max(passing, key=key, default=None)
    champion, why = current_champion, "no candidate passed its gates"
    if best is not None:
        if current_champion is None:
            champion, why = best.version, f"v{best.version} passed its gates and there was no champion"
        elif best.version == current_champion:
            why = f"v{current_champion} stays champion (best passing version)"
        elif champion_rank is None:
            why = f"v{current_champion} stays champion: it has no recorded metrics to compare with"
        elif best.rank > champion_rank:
            champion, why = best.version, f"v{best.version} passed its gates and ranks above v{current_champion}"
        else:
            why = f"v{current_champion} stays champion: v{best.version} does not rank above it"
    elif current_champion is not None:
        why = f"v{current_champion} stays champion: no candidate passed its gates"
    rest = [o for o in outcomes if o.version != champion]
    runner = max(rest, key=lambda o: (o.passed and o.rank is not None, o.rank or (), -int(o.version)), default=None)
    return AliasChoice(champion=champion, challenger=runner.version if runner else None, why=why)
