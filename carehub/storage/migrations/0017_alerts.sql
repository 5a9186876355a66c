-- Clinical alerts (MSG-7, DOC-19): critical values and other work items a person must acknowledge,
-- escalating along the department's contacts until one does.

-- who is called when the responsible doctor does not answer: the department's on-call doctor, then
-- its head (several rows of one role are called in account order)
CREATE TABLE department_contacts (
    department_id varchar(32) NOT NULL REFERENCES departments (id),
    role varchar(16) NOT NULL CHECK (role IN ('on_call', 'head')),
    account_id varchar(64) NOT NULL REFERENCES accounts (id),
    PRIMARY KEY (department_id, role, account_id)
);

-- minutes each contact has to acknowledge, per alert kind (a kind without a row: CAREHUB_ALERT_ACK_MINUTES)
CREATE TABLE alert_rules (
    kind varchar(40) PRIMARY KEY,
    ack_minutes double precision NOT NULL CHECK (ack_minutes > 0 AND ack_minutes <= 1440)
);

-- every alert (the alert actor's projection)
CREATE TABLE clinical_alerts (
    id varchar(64) PRIMARY KEY,
    kind varchar(40) NOT NULL,
    status varchar(16) NOT NULL,
    patient_id varchar(64) NOT NULL DEFAULT '',
    patient_label varchar(40) NOT NULL DEFAULT '',
    item varchar(100) NOT NULL DEFAULT '',
    value varchar(60) NOT NULL DEFAULT '',
    flag varchar(8) NOT NULL DEFAULT '',
    department_id varchar(32) NOT NULL DEFAULT '',
    department varchar(100) NOT NULL DEFAULT '',
    source varchar(120) NOT NULL DEFAULT '',
    -- the chain, comma-separated account ids, and those alerted so far
    contacts text NOT NULL,
    notified text NOT NULL,
    level integer NOT NULL,
    current_account_id varchar(64) NOT NULL,
    ack_seconds integer NOT NULL,
    raised_at timestamptz NOT NULL,
    deadline_at timestamptz,
    acked_by varchar(64),
    acked_at timestamptz,
    ack_device varchar(64),
    steps integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);
CREATE INDEX clinical_alerts_status ON clinical_alerts (status, raised_at);

-- every step of an alert, with its time: raised, notified, escalated, acknowledged, unanswered
CREATE TABLE alert_steps (
    alert_id varchar(64) NOT NULL,
    seq integer NOT NULL,
    at timestamptz NOT NULL,
    action varchar(16) NOT NULL,
    account_id varchar(64),
    note varchar(200) NOT NULL DEFAULT '',
    PRIMARY KEY (alert_id, seq)
);
