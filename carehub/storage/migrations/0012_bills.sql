-- Outpatient bills (OUT-13, ME-6), slip QR codes and self-service test orders (OUT-14).
-- A bill is one charge the patient owes: a HIS ChargeItem (fetched from the HIS, kept here so
-- payments and history do not depend on the HIS answering) or a self-service test order.
-- A bill order is one WeChat Pay order for a set of bills of one patient; it is paid at most
-- once (a conditional UPDATE ... WHERE status = 'created' decides, see carehub/outpatient/bills.py).

CREATE TABLE bills (
    id            varchar(80)  PRIMARY KEY,
    source        varchar(8)   NOT NULL,      -- his | self
    his_id        varchar(64),                -- ChargeItem id at the HIS
    patient_id    varchar(32)  NOT NULL,
    visit_id      varchar(64),                -- the booking (Encounter) the charge belongs to
    slip          varchar(80),                -- the prescription or exam request: ServiceRequest/..., MedicationRequest/...
    code          varchar(40)  NOT NULL,
    name          varchar(100) NOT NULL,
    category      varchar(20)  NOT NULL,      -- exam | lab | drug | treatment | other
    quantity      integer      NOT NULL,
    amount_fen    integer      NOT NULL,
    status        varchar(12)  NOT NULL,      -- unpaid | paid | refunded | cancelled
    order_no      varchar(32),                -- the bill order that paid it (NULL: unpaid or paid at a window)
    occurred_at   timestamptz  NOT NULL,
    created_at    timestamptz  NOT NULL,
    updated_at    timestamptz  NOT NULL
);
CREATE INDEX bills_patient ON bills (patient_id, status);
CREATE INDEX bills_visit ON bills (visit_id);
CREATE INDEX bills_order ON bills (order_no);

CREATE TABLE bill_orders (
    out_trade_no    varchar(32)  PRIMARY KEY,
    account_id      varchar(64)  NOT NULL,
    patient_id      varchar(32)  NOT NULL,
    total_fen       integer      NOT NULL,
    status          varchar(12)  NOT NULL,    -- created | paid | refunding | refunded | closed
    transaction_id  varchar(64),
    refund_no       varchar(64),
    refunded_fen    integer      NOT NULL DEFAULT 0,
    note            varchar(200),
    created_at      timestamptz  NOT NULL,
    paid_at         timestamptz,
    updated_at      timestamptz  NOT NULL
);
CREATE INDEX bill_orders_account ON bill_orders (account_id, created_at);

CREATE TABLE bill_order_items (
    out_trade_no  varchar(32)  NOT NULL,
    bill_id       varchar(80)  NOT NULL,
    PRIMARY KEY (out_trade_no, bill_id)
);
CREATE INDEX bill_order_items_bill ON bill_order_items (bill_id);

CREATE TABLE test_catalogue (
    code         varchar(40)   PRIMARY KEY,
    name         varchar(100)  NOT NULL,
    category     varchar(20)   NOT NULL,
    price_fen    integer       NOT NULL,
    description  varchar(500)  NOT NULL DEFAULT '',
    notice       varchar(500)  NOT NULL DEFAULT '',
    active       boolean       NOT NULL,
    updated_at   timestamptz   NOT NULL,
    updated_by   varchar(64)   NOT NULL
);

CREATE TABLE test_orders (
    id          varchar(40)  PRIMARY KEY,
    account_id  varchar(64)  NOT NULL,
    patient_id  varchar(32)  NOT NULL,
    code        varchar(40)  NOT NULL,
    bill_id     varchar(80)  NOT NULL,
    created_at  timestamptz  NOT NULL
);
CREATE INDEX test_orders_account ON test_orders (account_id, created_at);
