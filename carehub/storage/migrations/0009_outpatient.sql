-- Outpatient: slot rules, rosters and their approval, clinic sessions, bookings, payment orders,
-- queue calls for hall screens, no-shows and the blacklist.
-- The slot-pool actor (one per doctor and day) owns sessions, bookings and payment orders: these
-- tables are its query projection, written in the same transaction as its state.

CREATE TABLE slot_rules (
    doctor_id        varchar(64)  PRIMARY KEY REFERENCES accounts (id),
    slot_minutes     integer      NOT NULL,
    daily_max        integer      NOT NULL,
    quota_app        integer      NOT NULL,
    quota_kiosk      integer      NOT NULL,
    quota_partner    integer      NOT NULL,
    open_days_ahead  integer      NOT NULL,
    open_time        varchar(5)   NOT NULL,
    fee_fen          integer      NOT NULL,
    one_per          varchar(16)  NOT NULL DEFAULT 'doctor_day',
    updated_at       timestamptz  NOT NULL,
    updated_by       varchar(64)  NOT NULL
);

CREATE TABLE rosters (
    id               varchar(40)  PRIMARY KEY,
    doctor_id        varchar(64)  NOT NULL REFERENCES accounts (id),
    department_id    varchar(32)  NOT NULL,
    kind             varchar(16)  NOT NULL,
    status           varchar(16)  NOT NULL,
    sessions         text         NOT NULL,
    substitute_id    varchar(64),
    reason           varchar(500) NOT NULL DEFAULT '',
    submitted_by     varchar(64)  NOT NULL,
    submitted_at     timestamptz  NOT NULL,
    decided_by       varchar(64),
    decided_at       timestamptz,
    decision_reason  varchar(500)
);
CREATE INDEX rosters_status ON rosters (status, submitted_at);
CREATE INDEX rosters_doctor ON rosters (doctor_id, submitted_at);

CREATE TABLE clinic_sessions (
    id             varchar(80)  PRIMARY KEY,
    doctor_id      varchar(64)  NOT NULL,
    department_id  varchar(32)  NOT NULL,
    day            date         NOT NULL,
    period         varchar(8)   NOT NULL,
    room           varchar(40)  NOT NULL,
    starts_at      timestamptz  NOT NULL,
    ends_at        timestamptz  NOT NULL,
    slot_minutes   integer      NOT NULL,
    capacity       integer      NOT NULL,
    booked         integer      NOT NULL,
    fee_fen        integer      NOT NULL,
    opens_at       timestamptz  NOT NULL,
    status         varchar(16)  NOT NULL,
    substitute_id  varchar(64)
);
CREATE INDEX clinic_sessions_day ON clinic_sessions (day, department_id);
CREATE INDEX clinic_sessions_doctor ON clinic_sessions (doctor_id, day);

CREATE TABLE bookings (
    id             varchar(40)  PRIMARY KEY,
    session_id     varchar(80)  NOT NULL,
    doctor_id      varchar(64)  NOT NULL,
    department_id  varchar(32)  NOT NULL,
    day            date         NOT NULL,
    slot_no        integer      NOT NULL,
    slot_at        timestamptz  NOT NULL,
    patient_id     varchar(64)  NOT NULL,
    account_id     varchar(64)  NOT NULL,
    channel        varchar(16)  NOT NULL,
    status         varchar(16)  NOT NULL,
    fee_fen        integer      NOT NULL,
    created_at     timestamptz  NOT NULL,
    updated_at     timestamptz  NOT NULL,
    note           varchar(200)
);
CREATE INDEX bookings_account ON bookings (account_id, day);
CREATE INDEX bookings_patient ON bookings (patient_id, day);
CREATE INDEX bookings_created ON bookings (created_at);
CREATE INDEX bookings_doctor ON bookings (doctor_id, day);
CREATE INDEX bookings_session ON bookings (session_id);

CREATE TABLE payment_orders (
    out_trade_no    varchar(32)  PRIMARY KEY,
    booking_id      varchar(40)  NOT NULL,
    account_id      varchar(64)  NOT NULL,
    method          varchar(16)  NOT NULL,
    total_fen       integer      NOT NULL,
    insurance_fen   integer      NOT NULL,
    cash_fen        integer      NOT NULL,
    status          varchar(16)  NOT NULL,
    transaction_id  varchar(64),
    refunded_fen    integer      NOT NULL,
    created_at      timestamptz  NOT NULL,
    updated_at      timestamptz  NOT NULL
);
CREATE INDEX payment_orders_booking ON payment_orders (booking_id);

CREATE TABLE queue_calls (
    id             varchar(120) PRIMARY KEY,
    department_id  varchar(32)  NOT NULL,
    session_id     varchar(80)  NOT NULL,
    booking_id     varchar(40)  NOT NULL,
    patient_label  varchar(40)  NOT NULL,
    room           varchar(40)  NOT NULL,
    kind           varchar(16)  NOT NULL,
    called_at      timestamptz  NOT NULL
);
CREATE INDEX queue_calls_department ON queue_calls (department_id, called_at);

CREATE TABLE no_shows (
    booking_id   varchar(40)  PRIMARY KEY,
    patient_id   varchar(64)  NOT NULL,
    session_id   varchar(80)  NOT NULL,
    day          date         NOT NULL,
    recorded_at  timestamptz  NOT NULL
);
CREATE INDEX no_shows_patient ON no_shows (patient_id, day);

CREATE TABLE no_show_rule (
    id            integer      PRIMARY KEY CHECK (id = 1),
    max_no_shows  integer      NOT NULL,
    window_days   integer      NOT NULL,
    ban_days      integer      NOT NULL,
    enabled       boolean      NOT NULL,
    updated_at    timestamptz  NOT NULL,
    updated_by    varchar(64)  NOT NULL
);
INSERT INTO no_show_rule (id, max_no_shows, window_days, ban_days, enabled, updated_at, updated_by)
VALUES (1, 3, 90, 30, TRUE, CURRENT_TIMESTAMP, 'system');

CREATE TABLE blacklist (
    id              varchar(40)  PRIMARY KEY,
    patient_id      varchar(64)  NOT NULL,
    since           timestamptz  NOT NULL,
    until           timestamptz  NOT NULL,
    reason          varchar(200) NOT NULL,
    created_by      varchar(64)  NOT NULL,
    removed_at      timestamptz,
    removed_by      varchar(64),
    removal_reason  varchar(200)
);
CREATE INDEX blacklist_patient ON blacklist (patient_id, until);
