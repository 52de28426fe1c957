"""Run every audit source over a library and rank the findings.

Layers: :func:`audit_track` (one track, grid + cue checks) → :func:`audit_library` (adds the
library-wide parts: model latency and cleanlab) → :func:`load_activations` (out-of-fold
probabilities from a model folder, or predictions from the store for tracks without them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edm.audit.cleanlab_checks import boundary_findings, downbeat_findings
from edm.audit.corrections import apply_grid_fix
from edm.audit.cue_checks import check_cues
from edm.audit.findings import Finding, rank_findings
from edm.audit.grid_checks import PHASE_TOLERANCE_S, check_grid, estimate_phase
from edm.audit.phrase_checks import check_cues_against_phrases
from edm.data.schema import TempoSegment, TrackAnnotation
from edm.heads.activations import Activations


@dataclass
class AuditResult:
    """Ranked findings, the corrected grids, and per-track problems (one line each)."""

    findings: list[Finding]
    grids: dict[str, list[TempoSegment]] = field(default_factory=dict)
    latency_s: float = 0.0
    phase_tolerance_s: float = PHASE_TOLERANCE_S
    tracks_audited: int = 0
    tracks_with_activations: int = 0
    problems: list[str] = field(default_factory=list)


def audit_track(
    track: TrackAnnotation,
    act: Activations | None,
    *,
    latency_s: float = 0.0,
    phase_tolerance_s: float = PHASE_TOLERANCE_S,
) -> tuple[list[Finding], list[TempoSegment]]:
    """Grid checks (when there are activations), cue heuristics and, for tracks with
    Rekordbox phrases, cues against the phrases."""
    findings: list[Finding] = []
    grid = list(track.grid)
    if act is not None and grid and track.end_s:
        checked = check_grid(track, act, latency_s=latency_s, phase_tolerance_s=phase_tolerance_s)
        findings += checked.findings
        grid = checked.corrected_grid
    findings += check_cues(track, grid, act, aligned=act is not None and bool(grid))
    findings += check_cues_against_phrases(track)
    return findings, grid


def audit_library(
    tracks: list[TrackAnnotation],
    activations: dict[str, Activations] | None = None,
    *,
    use_cleanlab: bool = True,
    top: int | None = None,
    progress: Callable[[], None] | None = None,
) -> AuditResult:
    """Audit every track: grid and cue checks, then cleanlab over the whole library.

    ``activations`` maps track id → out-of-fold :class:`Activations`; tracks without any get
    only the cue heuristics. A track that fails is reported in ``problems`` and skipped.
    """
    activations = activations or {}
    latency, spread = estimate_phase(tracks, activations) if activations else (0.0, 0.0)
    # An imprecise model moves right grids around: report only offsets beyond its own spread.
    tolerance = max(PHASE_TOLERANCE_S, 1.5 * spread)
    result = AuditResult(findings=[], latency_s=latency, phase_tolerance_s=tolerance)
    findings: list[Finding] = []
    pre_downbeat: dict[str, list[TempoSegment]] = {}
    audited: list[TrackAnnotation] = []
    for track in tracks:
        act = activations.get(track.track_id)
        try:
            track_findings, grid = audit_track(
                track, act, latency_s=latency, phase_tolerance_s=tolerance
            )
        except (ValueError, IndexError) as error:
            result.problems.append(f"{track.track.path or track.track_id}: audit failed ({error})")
            continue
        finally:
            if progress is not None:
                progress()
        audited.append(track)
        findings += track_findings
        result.grids[track.track_id] = grid
        result.tracks_with_activations += act is not None
        # cleanlab judges the grid's own downbeat labels, after octave/phase/tempo fixes.
        pre = list(track.grid)
        for finding in track_findings:
            if finding.is_grid and finding.kind != "downbeat_shift":
                pre = apply_grid_fix(pre, finding.kind, finding.fix)
        pre_downbeat[track.track_id] = pre
    result.tracks_audited = len(audited)
    if use_cleanlab and activations:
        findings += boundary_findings(audited, activations, result.grids)
        findings += downbeat_findings(audited, activations, pre_downbeat)
    result.findings = rank_findings(findings, top)
    return result


def load_activations(
    tracks: list[TrackAnnotation], models: str | Path | None, store: str | Path | None
) -> tuple[dict[str, Activations], list[str]]:
    """Out-of-fold activations from ``models`` (``edm fit-heads`` output); tracks without OOF
    probabilities are predicted from ``store`` with the trained heads (less trustworthy: the
    heads saw their labels). Returns activations and one-line problems."""
    if models is None:
        return {}, []
    from edm.heads.artifacts import load_heads, load_oof

    problems: list[str] = []
    activations = dict(load_oof(models))
    missing = [t for t in tracks if t.track_id not in activations]
    if missing and store is not None:
        from edm.store import EmbeddingStore

        heads = load_heads(models)
        embeddings = EmbeddingStore(store, mode="r")
        for track in missing:
            try:
                info = embeddings.backbone_info(track.track_id, heads.backbone_key)
                frames = embeddings.embeddings(track.track_id, heads.backbone_key)
            except (KeyError, ValueError) as error:
                problems.append(
                    f"{store}: track {track.track.path or track.track_id} not usable ({error})"
                )
                continue
            activations[track.track_id] = heads.predict(frames, info.frames_per_second)
    return activations, problems
