"""What several REST modules still share: key-ring and patient error mapping."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from carehub.identity.patients import PatientRefused
from carehub.storage.keyring import DecryptionFailed, IntegrityError, KeyRingError

from ..errors import ApiError

log = logging.getLogger("carehub.http")


def key_ring_error(err: Exception) -> ApiError:
    """Stored values that do not open: the key file is not the one they were written with."""
    log.error("ALARM key ring: %s (is CAREHUB_KEY_FILE the key file this database was written with?)", err)
    message = "加密密钥与数据库不匹配，已通知运维 (the encryption keys do not fit the data)"
    return ApiError(503, "key_ring_mismatch", message)


@contextmanager
def patient_errors() -> Iterator[None]:
    try:
        yield
    except PatientRefused as err:
        raise ApiError(err.status, err.code, err.message) from None
    except (DecryptionFailed, KeyRingError) as err:
        raise key_ring_error(err) from None
    except IntegrityError as err:
        log.error("ALARM integrity: %s", err)
        message = "数据完整性校验失败，已通知运维 (a stored record failed its check)"
        raise ApiError(500, "integrity_error", message) from None
