-- Identity: encrypted phone with a blind index, sign-in lockout, staff TOTP, SMS sign-in codes,
-- staff practising certificates, idle session tracking.
-- Sealed values are SM4-GCM text tokens (carehub/storage/keyring.py); *_idx are HMAC-SM3 blind indexes.

ALTER TABLE accounts ADD COLUMN phone_enc varchar(300);
ALTER TABLE accounts ADD COLUMN phone_idx varchar(64);
ALTER TABLE accounts ADD COLUMN failed_logins integer NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_until timestamptz;
ALTER TABLE accounts ADD COLUMN totp_secret_enc varchar(300);
ALTER TABLE accounts ADD COLUMN totp_last_step bigint NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN row_tag varchar(64);
CREATE UNIQUE INDEX accounts_phone_idx ON accounts (phone_idx);

ALTER TABLE auth_sessions ADD COLUMN last_seen_at timestamptz;
ALTER TABLE auth_sessions ADD COLUMN source_ip varchar(64);

CREATE TABLE sms_codes (
    id          varchar(32)  PRIMARY KEY,
    phone_idx   varchar(64)  NOT NULL,
    code_mac    varchar(64)  NOT NULL,
    created_at  timestamptz  NOT NULL,
    expires_at  timestamptz  NOT NULL,
    used_at     timestamptz,
    attempts    integer      NOT NULL DEFAULT 0,
    source_ip   varchar(64),
    biz_id      varchar(64)
);
CREATE INDEX sms_codes_phone ON sms_codes (phone_idx, created_at);

CREATE TABLE staff_credentials (
    account_id          varchar(64)  PRIMARY KEY REFERENCES accounts (id),
    certificate_no      varchar(64)  NOT NULL,
    title               varchar(50)  NOT NULL,
    years_of_practice   integer      NOT NULL,
    profession          varchar(20)  NOT NULL,
    verified_at         timestamptz
);
