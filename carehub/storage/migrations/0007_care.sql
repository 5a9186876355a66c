-- Care relationships: a doctor may read a patient's data only while one links them
-- (consultation, appointment, follow-up) or after a logged break-glass with a reason.

CREATE TABLE care_links (
    doctor_id   varchar(64)  NOT NULL REFERENCES accounts (id),
    patient_id  varchar(32)  NOT NULL REFERENCES patients (id),
    kind        varchar(20)  NOT NULL,
    ref         varchar(120) NOT NULL,
    starts_at   timestamptz  NOT NULL,
    ends_at     timestamptz  NOT NULL,
    reason      varchar(400),
    PRIMARY KEY (doctor_id, patient_id, kind, ref)
);
CREATE INDEX care_links_patient ON care_links (patient_id, doctor_id);
