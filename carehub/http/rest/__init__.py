"""REST routes, one module per audience; each ``register`` adds its routes to the router."""

from . import admin, auth, bills, content_admin, directory, doctor, hub, open, ops, outpatient, patients

#: modules whose ``register(r)`` takes only the router; the others take their domain objects (api.py)
MODULES = (auth, patients, doctor, hub, admin, open, ops, directory, content_admin)

__all__ = ["MODULES", "bills", "outpatient"]
