-- Third-party systems (SCH-9 channel management): per-partner signing keys with allowed operations,
-- and the nonces seen recently (replay protection).

CREATE TABLE partner_keys (
    key_id       varchar(40)  PRIMARY KEY,
    account_id   varchar(64)  NOT NULL REFERENCES accounts (id),
    secret_enc   varchar(400) NOT NULL,
    operations   varchar(400) NOT NULL,
    created_at   timestamptz  NOT NULL,
    disabled     boolean      NOT NULL DEFAULT false
);

CREATE TABLE partner_nonces (
    key_id   varchar(40)  NOT NULL,
    nonce    varchar(64)  NOT NULL,
    seen_at  timestamptz  NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX partner_nonces_seen ON partner_nonces (seen_at);
