"""The hospital directory and its content (PUB-1..6, OUT-1, GUIDE-1, ADM-2..6): the domain side.

- :class:`Directory`: the directory's repositories, built once in :mod:`carehub.app` and handed to
  the REST modules that read and change it; :meth:`Directory.recommend` is smart triage over them.
- :mod:`.fields`: what each kind of entry may hold (``clean``, ``check_id``), messages in Chinese.
- :mod:`.triage`: the pure recommender (``recommend``) over triage rules.
- :mod:`.errors`: what the directory refuses.

SQL lives in :mod:`carehub.storage.directory`, one repository per aggregate.
"""

from __future__ import annotations

import dataclasses

from carehub.storage.audit import AuditLog
from carehub.storage.db import Database
from carehub.storage.directory._base import Editor
from carehub.storage.directory.announcements import AnnouncementStore
from carehub.storage.directory.departments import DepartmentStore
from carehub.storage.directory.doctors import DoctorStore
from carehub.storage.directory.guide import GuideStore
from carehub.storage.directory.hospital import SETTINGS, HospitalStore
from carehub.storage.directory.news import NewsStore
from carehub.storage.directory.prices import PriceStore
from carehub.storage.directory.triage import TriageStore

from .errors import DirectoryError, DirectoryInvalid, ImportRefused
from .fields import BODY_PARTS, check_id, clean, keywords_of
from .triage import Recommendation, TriageQuery, TriageRule, recommend

__all__ = [
    "BODY_PARTS",
    "SETTINGS",
    "Directory",
    "DirectoryError",
    "DirectoryInvalid",
    "Editor",
    "ImportRefused",
    "Recommendation",
    "TriageQuery",
    "TriageRule",
    "check_id",
    "clean",
    "keywords_of",
    "recommend",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Directory:
    """The directory's repositories, one per aggregate."""

    hospital: HospitalStore
    departments: DepartmentStore
    doctors: DoctorStore
    news: NewsStore
    guide: GuideStore
    announcements: AnnouncementStore
    prices: PriceStore
    triage: TriageStore

    @classmethod
    def over(cls, db: Database, audit: AuditLog) -> Directory:
        """Every repository over one database and audit log (for :mod:`carehub.app`)."""
        return cls(HospitalStore(db, audit), DepartmentStore(db, audit), DoctorStore(db, audit),
                   NewsStore(db, audit), GuideStore(db, audit), AnnouncementStore(db, audit),
                   PriceStore(db, audit), TriageStore(db, audit))

    async def recommend(self, query: TriageQuery, *, limit: int = 5) -> list[tuple[dict[str, object], Recommendation]]:
        """Open departments for a patient's body part and symptoms, best first (OUT-1): the rules'
        recommendations without disabled departments, each with the department it names."""
        places = {d["id"]: d for d in await self.departments.departments()}  # disabled ones are left out
        ranked = [rec for rec in recommend(await self.triage.triage_rules(query.body_part), query, limit=50)
                  if rec.department_id in places]
        return [(places[rec.department_id], rec) for rec in ranked[:limit]]
