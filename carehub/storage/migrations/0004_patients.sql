-- People who receive care ("就诊人") and their links to accounts (ME-1 real name, ME-2 family).
-- Names and ID numbers are sealed (SM4-GCM); id_number_idx is the HMAC-SM3 blind index;
-- row_tag is the HMAC-SM3 integrity tag over the sealed columns.

CREATE TABLE patients (
    id              varchar(32)  PRIMARY KEY,
    name_enc        varchar(400) NOT NULL,
    id_number_enc   varchar(400) NOT NULL,
    id_number_idx   varchar(64)  NOT NULL UNIQUE,
    sex             varchar(8)   NOT NULL,
    verified_at     timestamptz,
    verified_by     varchar(20),
    created_at      timestamptz  NOT NULL,
    row_tag         varchar(64)  NOT NULL
);

CREATE TABLE account_patients (
    account_id        varchar(64)  NOT NULL REFERENCES accounts (id),
    patient_id        varchar(32)  NOT NULL REFERENCES patients (id),
    relation          varchar(16)  NOT NULL,
    is_default        boolean      NOT NULL DEFAULT false,
    guardian_consent  boolean      NOT NULL DEFAULT false,
    -- a person already linked to another account must consent before this link is usable
    consent_status    varchar(16)  NOT NULL,
    created_at        timestamptz  NOT NULL,
    PRIMARY KEY (account_id, patient_id)
);
CREATE INDEX account_patients_patient ON account_patients (patient_id);

CREATE TABLE verifications (
    id           varchar(32)  PRIMARY KEY,
    patient_id   varchar(32)  NOT NULL REFERENCES patients (id),
    account_id   varchar(64)  NOT NULL REFERENCES accounts (id),
    method       varchar(16)  NOT NULL,
    status       varchar(16)  NOT NULL,
    biz_token    varchar(128),
    photo_enc    text,
    photo_type   varchar(40),
    reason       varchar(400),
    created_at   timestamptz  NOT NULL,
    decided_at   timestamptz,
    decided_by   varchar(64)
);
CREATE INDEX verifications_status ON verifications (status, created_at);
