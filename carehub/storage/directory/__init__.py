"""The hospital directory's repositories, one module per aggregate (PUB-1..6, OUT-1, GUIDE-1, ADM-2..6).

============================  ===========================================================
module                        tables
============================  ===========================================================
:mod:`.hospital`              ``hospital_info``, ``hospital_images``, ``campuses``, ``floors``,
                              ``directory_settings``
:mod:`.departments`           ``departments`` (with their place text)
:mod:`.doctors`               ``doctors`` (names from ``accounts``)
:mod:`.news`, :mod:`.guide`   ``news``, ``guide_pages``
:mod:`.announcements`         ``announcements``, ``announcement_reads``
:mod:`.prices`                ``prices``, ``price_changes``
:mod:`.triage`                ``triage_rules``, ``triage_rule_departments``
============================  ===========================================================

Reads return JSON-ready dicts. Every write runs in one transaction with its audit entry
(:meth:`AuditLog.append_in`), so a change and its record commit or roll back together. Lookups
and changes that cannot be done raise :class:`carehub.errors.NotFound`, :class:`~carehub.errors.Conflict`
or :class:`~carehub.errors.Invalid` (codes ``not_found``, ``conflict``, ``invalid``); the field
checks and the triage recommender are the domain's (:mod:`carehub.directory`).
"""
