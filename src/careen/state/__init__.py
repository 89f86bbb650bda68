"""Careen's state: what each run did, kept in a SQLite file (see :mod:`careen.state.store`)."""

from careen.state.schema import SCHEMA_VERSION, StateTooNewError
from careen.state.store import (
    BuildRecord,
    BuildStatus,
    PlanRecord,
    RunDetail,
    RunKind,
    RunRecord,
    RunStatus,
    ScanPhase,
    ScanRecord,
    StateFileError,
    StateLockedError,
    StateStore,
    TrendPoint,
    UnknownPlanError,
    UnknownRunError,
    VerdictRecord,
    default_state_path,
)

__all__ = [
    "SCHEMA_VERSION",
    "BuildRecord",
    "BuildStatus",
    "PlanRecord",
    "RunDetail",
    "RunKind",
    "RunRecord",
    "RunStatus",
    "ScanPhase",
    "ScanRecord",
    "StateFileError",
    "StateLockedError",
    "StateStore",
    "StateTooNewError",
    "TrendPoint",
    "UnknownPlanError",
    "UnknownRunError",
    "VerdictRecord",
    "default_state_path",
]
