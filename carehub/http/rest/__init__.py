"""REST routes, one module per audience; each ``register(r, *, <domain objects>)`` adds its routes to the
router (wired in ``carehub/http/api.py`` ``create_app``)."""
