"""Every projection of the system, by name: what the projector runs and `genrail replay`
rebuilds. Each entry is a projection factory (table names in, `Projection` out; see
`runner`)."""

from __future__ import annotations

from . import batches, jobs, ledger, users, webhooks
from .runner import ProjectionFactory

FACTORIES: tuple[ProjectionFactory, ...] = (users.make, jobs.make, ledger.make, batches.make, webhooks.make)


def by_name() -> dict[str, ProjectionFactory]:
    return {factory().name: factory for factory in FACTORIES}


def select(names: list[str] | None) -> list[ProjectionFactory]:
    """The factories named (all of them when none is), or KeyError naming the unknown ones."""
    known = by_name()
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown projection {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def tables() -> list[str]:
    """Every table the projections write, and the checkpoints beside them."""
    return [table for factory in FACTORIES for table in factory().tables] + ["projection_checkpoints"]


def ddl() -> list[str]:
    return [statement for factory in FACTORIES for statement in factory().ddl]
