"""Every projection of the system, by name: what `genrail replay` can rebuild.

Libraries never import services, so this list lives in the CLI: each entry is a service's
projection factory (table names in, `Projection` out; see genrail_platform.projection).
"""

from __future__ import annotations

from genrail_api.projector import batches, jobs, users
from genrail_ledger import projection as ledger
from genrail_platform.projection import ProjectionFactory

FACTORIES: tuple[ProjectionFactory, ...] = (users.make, jobs.make, ledger.make, batches.make)


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
