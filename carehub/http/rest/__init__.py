"""REST routes, one module per audience; each ``register`` adds its routes to the router."""

from . import admin, auth, bills, content_admin, directory, doctor, hub, open, ops, outpatient, patients

MODULES = (auth, patients, doctor, hub, admin, open, ops, directory, content_admin, outpatient, bills)

__all__ = ["MODULES"]
