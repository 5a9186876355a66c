"""Identity's repositories: accounts and sessions, patients, roles, care links, partner keys, signing keys.

One module per aggregate; each store is built once in :mod:`carehub.app` with the ``Database``
and handed to the identity object that uses it. Methods take and return plain values and
dataclasses, one ``Database.run`` crossing each.
"""
