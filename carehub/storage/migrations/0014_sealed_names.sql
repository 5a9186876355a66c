-- People's real names are personal data (docs/security.md, L3): sealed like phone numbers (issue 16).
-- display_name_enc holds the SM4-GCM sealed name of a person's account (patients); display_name then
-- holds only the masked form (张**) that others may be shown. Staff, doctors and partners keep plain,
-- public names and no display_name_enc. The keys never reach the database, so rows written before
-- this migration are sealed by CareHub at start-up (Identity.seal_people_names, storage/identity/accounts.py).

ALTER TABLE accounts ADD COLUMN display_name_enc varchar(400);
