"""Leased claims: how several workers, on several hosts, share rows of work through the database.

A claim selects due rows with `SELECT … FOR UPDATE SKIP LOCKED` (a concurrent worker skips the
rows another is claiming instead of waiting for them), writes the worker's name and a lease expiry
on them, and commits at once: no transaction stays open while the work itself runs, which may
wait seconds on the network. A worker that dies keeps its rows only until the lease runs out; the
caller's "due" filter then selects them again. A worker writes an outcome only where it still
holds the lease (`held_by`), so a late worker, whose lease ran out and whose rows were taken over,
cannot overwrite the new holder's result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection, models, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import Combinable, OrderBy

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class Lease:
    """The two fields of a model that hold a lease: who holds it and until when."""

    owner_field: str
    expires_field: str

    def free(self, now: datetime) -> Q:
        """Rows nobody holds: never leased, or whose lease has run out."""
        return Q(**{f"{self.expires_field}__isnull": True}) | Q(**{f"{self.expires_field}__lt": now})

    def held_by(self, worker: str) -> Q:
        return Q(**{self.owner_field: worker})

    def claim(
        self,
        queryset: QuerySet[M],
        *,
        worker: str,
        until: datetime,
        limit: int,
        order_by: Sequence[str | OrderBy | Combinable],
        also: Mapping[str, Any] | None = None,
        related: Sequence[str] = (),
        tiers: Sequence[Q] = (),
    ) -> list[M]:
        """Leases up to `limit` rows of `queryset` to `worker` until `until` and returns them, in
        `order_by` order, as they are after the claim. `queryset` is the caller's filter of the rows
        that may be claimed now (due and free); `also` is written with the lease (e.g. an attempt
        counter); `related` is select_related on the rows returned.

        `tiers` (disjoint filters) are taken in turn, each in `order_by` order, until `limit` rows are
        found: all the rows of the first come before any of the second. Where one ORDER BY across
        them has no index to follow (say NULLs first, then the oldest), the database sorts every
        candidate row at every claim, and a run's claims cost the square of its rows; a tier each
        index range can serve is read only as far as the claim needs."""
        with transaction.atomic():
            pks: list[Any] = []
            for tier in tiers or (Q(),):
                if len(pks) >= limit:
                    break
                candidates = queryset.filter(tier).order_by(*order_by)
                if connection.features.has_select_for_update_skip_locked:
                    candidates = candidates.select_for_update(skip_locked=True)
                pks += candidates.values_list("pk", flat=True)[: limit - len(pks)]
            if not pks:
                return []
            # The UPDATE re-applies the caller's filter: SQLite has no row locks, so two workers may
            # select the same rows there, and only the first UPDATE takes them.
            queryset.filter(pk__in=pks).update(**{self.owner_field: worker, self.expires_field: until}, **(also or {}))
            rows = queryset.model._default_manager.select_related(*related).filter(
                self.held_by(worker), pk__in=pks, **{self.expires_field: until}
            )
            position = {pk: index for index, pk in enumerate(pks)}
            return sorted(rows, key=lambda row: position[row.pk])

    def release(self, queryset: QuerySet[M], *, worker: str, **values: Any) -> int:
        """Gives rows of `queryset` that `worker` still holds back at once (a worker that stops
        early), writing `values` (by default: no owner, no expiry, so they are due again)."""
        values = values or {self.owner_field: "", self.expires_field: None}
        return queryset.filter(self.held_by(worker)).update(**values)
