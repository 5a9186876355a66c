"""REST routes, one module per audience; each ``register`` adds its routes to the router."""

from . import admin, auth, directory, doctor, hub, open, ops, patients

MODULES = (auth, patients, doctor, hub, admin, open, ops, directory)

__all__ = ["MODULES"]
