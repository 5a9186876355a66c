-- Slot rules keep how long an unpaid booking holds its slot (0009 forgot the column, so the
-- value an admin set was dropped and every pool held for 15 minutes) and the check-in window
-- around each slot (OUT-8): how early a patient may check in and how late.

ALTER TABLE slot_rules ADD COLUMN hold_minutes integer NOT NULL DEFAULT 15;
ALTER TABLE slot_rules ADD COLUMN checkin_before_minutes integer NOT NULL DEFAULT 60;
ALTER TABLE slot_rules ADD COLUMN checkin_after_minutes integer NOT NULL DEFAULT 30;
