"""REST routes, one module per audience; each ``register`` adds its routes to the router."""

from . import admin, auth, content_admin, directory, doctor, hub, open, ops, outpatient, patients

MODULES = (auth, patients, doctor, hub, admin, open, ops, directory, content_admin, outpatient)

__all__ = ["MODULES"]
