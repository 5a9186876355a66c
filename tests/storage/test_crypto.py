"""SM3, HMAC-SM3, SM4 and SM2 against the national standards' examples and an independent
implementation (gmssl), and the key ring's sealing and blind index."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl import sm2 as gmssl_sm2  # type: ignore[import-untyped]
from gmssl import sm3 as gmssl_sm3
from gmssl import sm4 as gmssl_sm4

from carehub.storage.crypto import (
    SM2_DEFAULT_USER_ID,
    DecryptionFailed,
    canonical_json,
    hmac_sm3,
    sm2_generate_keypair,
    sm2_public_key_of,
    sm2_sign,
    sm2_verify,
    sm2_z,
    sm3,
    sm4_ecb_encrypt_block,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from carehub.storage.keyring import KeyRing, KeyRingError, ensure_key_file

# GB/T 32907-2016 appendix A, example 1: key = plaintext
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SM4_CIPHERTEXT = "681edf34d206965e86b3e94f536e4246"

# GB/T 32918.2-2016 appendix A: signature on the recommended curve with the default user id
SM2_PRIVATE = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8"
SM2_PUBLIC = (
    "09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
    "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
)
SM2_ZA = "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
SM2_K = "59276e27d506861a16680f3ad9c02dccef3cc1fa3cdbe4ce6d54b80deac1bc21"
SM2_SIGNATURE = (
    "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3"
    "b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa"
)


def _gmssl_sm3(data: bytes) -> bytes:
    return bytes.fromhex(gmssl_sm3.sm3_hash(list(data)))


def test_sm4_encrypts_the_gbt_32907_example_block() -> None:
    assert sm4_ecb_encrypt_block(SM4_KEY, SM4_KEY).hex() == SM4_CIPHERTEXT


def test_sm4_encrypting_the_example_a_million_times_gives_the_gbt_32907_result() -> None:
    encryptor = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()
    block = SM4_KEY
    for _ in range(1_000_000):
        block = encryptor.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"
    assert sm4_ecb_encrypt_block(SM4_KEY, SM4_KEY).hex() == SM4_CIPHERTEXT  # the helper uses the same cipher


def test_sm4_agrees_with_gmssl_on_the_example_block() -> None:
    engine = gmssl_sm4.CryptSM4()  # pure Python, independent of OpenSSL
    engine.set_key(SM4_KEY, gmssl_sm4.SM4_ENCRYPT)
    assert engine.crypt_ecb(SM4_KEY)[:16].hex() == SM4_CIPHERTEXT  # then a PKCS#7 padding block


def test_sm3_hashes_the_gbt_32905_examples() -> None:
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


@pytest.mark.parametrize("key_length", [16, 64, 100])  # shorter than, equal to and longer than a block
@pytest.mark.parametrize("message", [b"", b"abc", bytes(range(256)) * 3])
def test_hmac_sm3_agrees_with_rfc_2104_over_gmssl_sm3(key_length: int, message: bytes) -> None:
    key = bytes((i * 7 + 1) % 256 for i in range(key_length))
    block = 64
    if len(key) > block:
        key = _gmssl_sm3(key)
    key = key.ljust(block, b"\0")
    inner = _gmssl_sm3(bytes(k ^ 0x36 for k in key) + message)
    expected = _gmssl_sm3(bytes(k ^ 0x5C for k in key) + inner)
    assert hmac_sm3(bytes((i * 7 + 1) % 256 for i in range(key_length)), message) == expected


def test_sm4_gcm_round_trips_and_uses_a_fresh_nonce_each_time() -> None:
    key = bytes(range(16))
    first = sm4_gcm_encrypt(key, "诊断：高血压".encode(), b"ctx")
    second = sm4_gcm_encrypt(key, "诊断：高血压".encode(), b"ctx")
    assert first != second
    assert sm4_gcm_decrypt(key, first, b"ctx").decode() == "诊断：高血压"
    assert sm4_gcm_decrypt(key, second, b"ctx").decode() == "诊断：高血压"


@pytest.mark.parametrize("position", [0, 12, 20, -1])  # nonce, ciphertext, ciphertext, tag
def test_sm4_gcm_refuses_a_flipped_byte(position: int) -> None:
    key = bytes(range(16))
    sealed = bytearray(sm4_gcm_encrypt(key, b"13812345678 and more text", b"ctx"))
    sealed[position] ^= 0x01
    with pytest.raises(DecryptionFailed):
        sm4_gcm_decrypt(key, bytes(sealed), b"ctx")


def test_sm4_gcm_refuses_the_wrong_context_or_key() -> None:
    key = bytes(range(16))
    sealed = sm4_gcm_encrypt(key, b"secret", b"ctx")
    with pytest.raises(DecryptionFailed):
        sm4_gcm_decrypt(key, sealed, b"other")
    with pytest.raises(DecryptionFailed):
        sm4_gcm_decrypt(bytes(16), sealed, b"ctx")


def test_a_sealed_value_carries_its_key_id_and_opens_for_its_own_field() -> None:
    ring = KeyRing.generate("k7")
    token = ring.seal("110101199003071234", field="patients.id_number")
    assert token.startswith("sm4gcm:k7:")
    assert "110101199003071234" not in token
    assert ring.key_id_of(token) == "k7"
    assert ring.open(token, field="patients.id_number") == "110101199003071234"


def test_a_value_sealed_for_one_field_does_not_open_as_another() -> None:
    ring = KeyRing.generate()
    token = ring.seal("13812345678", field="phone")
    with pytest.raises(DecryptionFailed, match="sealed for another field"):
        ring.open(token, field="id_number")


def test_a_sealed_value_with_a_flipped_character_is_refused() -> None:
    ring = KeyRing.generate()
    token = ring.seal("chat text", field="chat")
    body = token.rsplit(":", 1)[1]
    flipped = body[:5] + ("A" if body[5] != "A" else "B") + body[6:]
    with pytest.raises(DecryptionFailed):
        ring.open(token.rsplit(":", 1)[0] + ":" + flipped, field="chat")


def test_a_value_under_a_key_the_ring_lacks_says_which_key() -> None:
    token = KeyRing.generate("old").seal("x", field="f")
    with pytest.raises(DecryptionFailed, match="'old'"):
        KeyRing.generate("new").open(token, field="f")


def test_blind_index_is_equal_for_equal_values_and_differs_per_field_and_ring() -> None:
    ring = KeyRing.generate()
    a = ring.blind_index("11010519491231002x", field="id_number")
    assert a == ring.blind_index(" 11010519491231002X ", field="id_number")  # normalised
    assert a == ring.blind_index("１１０１０５１９４９１２３１００２Ｘ", field="id_number")  # full width
    assert a != ring.blind_index("110105194912310021", field="id_number")
    assert a != ring.blind_index("11010519491231002X", field="phone")
    assert a != KeyRing.generate().blind_index("11010519491231002X", field="id_number")
    assert len(a) == 64 and int(a, 16) >= 0


def test_key_ring_loads_from_environment_json_and_rejects_bad_keys() -> None:
    ring = KeyRing.generate()
    again = KeyRing.from_env({"CAREHUB_KEYS": ring.to_json()})
    assert again.open(ring.seal("x", field="f"), field="f") == "x"
    doc = json.loads(ring.to_json())
    doc["keys"]["k1"] = "abcd"
    with pytest.raises(KeyRingError, match="16 bytes"):
        KeyRing.from_json(json.dumps(doc))
    with pytest.raises(KeyRingError, match="CAREHUB_KEY_FILE"):
        KeyRing.from_env({})


def test_a_missing_key_file_is_created_owner_only_and_then_reused(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "data" / "keys.json"  # type: ignore[operator]
    ring = ensure_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    token = ring.seal("x", field="f")
    assert ensure_key_file(path).open(token, field="f") == "x"
    assert KeyRing.from_env({"CAREHUB_KEY_FILE": str(path)}).open(token, field="f") == "x"


def test_sm2_matches_the_gbt_32918_example_signature() -> None:
    assert sm2_public_key_of(SM2_PRIVATE) == SM2_PUBLIC
    assert sm2_z(SM2_PUBLIC, SM2_DEFAULT_USER_ID).hex() == SM2_ZA
    e = sm3(sm2_z(SM2_PUBLIC) + b"message digest")
    engine = gmssl_sm2.CryptSM2(private_key=SM2_PRIVATE, public_key="")
    engine.public_key = SM2_PUBLIC
    assert engine.sign(e, SM2_K) == SM2_SIGNATURE  # our digest + the fixed k of the example
    assert sm2_verify(SM2_PUBLIC, b"message digest", SM2_SIGNATURE)
    assert sm2_verify("04" + SM2_PUBLIC.upper(), b"message digest", SM2_SIGNATURE.upper())


def test_sm2_signature_verifies_and_a_changed_byte_does_not() -> None:
    keys = sm2_generate_keypair()
    content = canonical_json({"rx": "RX-1", "items": [{"drug": "阿莫西林", "qty": 2}], "doctor": "D1"})
    signature = sm2_sign(keys.private_hex, content, public_hex=keys.public_hex)
    assert sm2_verify(keys.public_hex, content, signature)
    changed = content.replace(b'"qty":2', b'"qty":9')
    assert not sm2_verify(keys.public_hex, changed, signature)
    flipped = signature[:10] + ("0" if signature[10] != "0" else "1") + signature[11:]
    assert not sm2_verify(keys.public_hex, content, flipped)
    assert not sm2_verify(sm2_generate_keypair().public_hex, content, signature)
    assert not sm2_verify(keys.public_hex, content, "not a signature")
    assert not sm2_verify("04" + "00" * 64, content, signature)  # not on the curve


def test_sm2_signatures_verify_with_gmssl_and_the_other_way_round() -> None:
    keys = sm2_generate_keypair()
    engine = gmssl_sm2.CryptSM2(private_key=keys.private_hex, public_key="")
    engine.public_key = keys.public_hex
    assert engine.verify_with_sm3(sm2_sign(keys.private_hex, b"review ok"), b"review ok")
    assert sm2_verify(keys.public_hex, b"review ok", engine.sign_with_sm3(b"review ok"))


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["张", None, True]}) == '{"a":["张",null,true],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_sm4_gcm_never_repeats_a_nonce_across_many_encryptions() -> None:
    key = bytes(range(16))
    nonces = {sm4_gcm_encrypt(key, b"same text")[:12] for _ in range(1000)}  # ~4 blocks of the nonce pool
    assert len(nonces) == 1000
