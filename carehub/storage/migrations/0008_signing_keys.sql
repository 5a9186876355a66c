-- SM2 key pairs of the people who sign (doctors' records and prescriptions, pharmacists' reviews).
-- The private key is sealed (SM4-GCM); a retired key stays for verifying what it signed.

CREATE TABLE signing_keys (
    key_id        varchar(40)  PRIMARY KEY,
    account_id    varchar(64)  NOT NULL REFERENCES accounts (id),
    public_hex    varchar(130) NOT NULL,
    private_enc   varchar(400) NOT NULL,
    created_at    timestamptz  NOT NULL,
    retired_at    timestamptz
);
CREATE INDEX signing_keys_account ON signing_keys (account_id);
