"""The demo hospital seeded on first start: departments, doctors, patients and staff.

Every demo account signs in with the password :data:`DEMO_PASSWORD`.
"""

from __future__ import annotations

import datetime as dt
import logging

from carehub.actors.slot_pool import BEIJING
from carehub.identity import STAFF_ROLES, Identity, NewAccount
from carehub.identity.partners import OPERATIONS
from carehub.identity.patients import Patients
from carehub.identity.signatures import Signatures
from carehub.outpatient.schedule import RosterRequest, RosterSession, Schedule
from carehub.storage.db import Database
from carehub.storage.directory.demo import seed_demo_hospital
from carehub.storage.identity.partners import PartnerKeyStore
from carehub.storage.messaging import PublishStore

log = logging.getLogger("carehub.demo")

DEMO_PASSWORD = "carehub-demo"
#: Every demo staff account's TOTP secret (base32), for authenticator apps and bots.
DEMO_TOTP_SECRET = "CAREHUBDEMOSTAFFTOTPSECRET234567"
#: DEMO ONLY: partner1's signing key (every partner operation), for the docs/open-api.md examples.
#: A real partner's key is issued by an admin (POST /api/v1/admin/partners/<id>/keys) and shown once.
DEMO_PARTNER_KEY_ID = "pk_demo_partner1"
DEMO_PARTNER_KEY_SECRET = "carehub-demo-partner-secret-NOT-FOR-PRODUCTION"

DEPARTMENTS = [
    ("cardio", "心血管内科", "本部院区", "门诊楼3层A区"),
    ("resp", "呼吸与危重症医学科", "本部院区", "门诊楼3层B区"),
    ("peds", "儿科", "本部院区", "门诊楼2层"),
    ("ortho", "骨科", "东院区", "外科楼4层"),
    ("derm", "皮肤科", "东院区", "外科楼2层"),
]

DOCTORS = [
    ("doctor1", "李建国", "cardio", "主任医师", "冠心病、高血压"),
    ("doctor2", "王晓燕", "cardio", "副主任医师", "心律失常"),
    ("doctor3", "张明", "resp", "主任医师", "慢阻肺、哮喘"),
    ("doctor4", "陈静", "peds", "主治医师", "小儿呼吸道感染"),
    ("doctor5", "刘洋", "ortho", "副主任医师", "关节外科"),
    ("doctor6", "赵丽", "derm", "主治医师", "湿疹、痤疮"),
]

#: years of practice of each demo doctor (doctor6 is below the 3 years online practice needs)
YEARS = (22, 15, 25, 6, 12, 2)

#: login, name, phone, resident ID number (synthetic, valid GB 11643 check digit)
PATIENTS = [
    ("patient1", "张三", "13800138001", "110101198001010109"),
    ("patient2", "李四", "13800138002", "110101198502020102"),
    ("patient3", "王五", "13800138003", "110101199003030108"),
    ("patient4", "赵六", "13800138004", "110101195504040103"),
]

STAFF = [
    ("admin", "系统管理员", ["admin"]),
    ("ops", "运维值班", ["ops"]),
    ("pharmacist1", "孙药师", ["pharmacist"]),
    ("partner1", "区域挂号平台", ["partner"]),
]


async def seed_demo(
    db: Database, identity: Identity, patients: Patients, signatures: Signatures | None = None
) -> bool:
    """Seed once; returns False when the hospital already has accounts."""
    if await identity.accounts.count() > 0:
        await seed_demo_partner(db, identity)  # a demo database made before the demo partner key
        return False
    staff_totp = DEMO_TOTP_SECRET
    specs = [NewAccount(login, name, ["doctor"], DEMO_PASSWORD, totp_secret=staff_totp) for login, name, *_ in DOCTORS]
    specs += [NewAccount(login, name, ["patient"], DEMO_PASSWORD, phone=phone) for login, name, phone, _ in PATIENTS]
    specs += [
        NewAccount(login, name, roles, DEMO_PASSWORD, totp_secret=staff_totp if set(roles) & STAFF_ROLES else None)
        for login, name, roles in STAFF
    ]
    # demo passwords are easy to type; real staff passwords must pass the strength rule
    ids = await identity.create_accounts(specs, enforce_strength=False)
    by_login = dict(zip([s.login for s in specs], ids, strict=True))

    credentials = [
        (by_login[login], f"1101100{i:08d}", title, years, "doctor")
        for i, ((login, _, _, title, _), years) in enumerate(zip(DOCTORS, YEARS, strict=True))
    ] + [(by_login["pharmacist1"], "YS1101000001", "主管药师", 9, "pharmacist")]
    await seed_demo_hospital(
        db, DEPARTMENTS, [(by_login[login], dept, title, spec) for login, _, dept, title, spec in DOCTORS], credentials
    )
    if signatures is not None:
        for login in [d[0] for d in DOCTORS] + ["pharmacist1"]:
            await signatures.issue_key(by_login[login])
    for login, name, _, id_number in PATIENTS:
        # the demo patients were verified at the hospital's counter
        await patients.add(by_login[login], name, id_number, "self", verified_by="counter")
    await seed_demo_partner(db, identity)
    log.info("seeded the demo hospital: %d accounts, password %r", len(ids), DEMO_PASSWORD)
    return True


async def seed_demo_partner(db: Database, identity: Identity) -> None:
    """partner1's fixed demo key and a publish rule (every kind, patients and staff), once (MSG-1)."""
    partner = await identity.accounts.by_login("partner1")
    if partner is None:
        return
    keys = PartnerKeyStore(db)
    if await keys.key(DEMO_PARTNER_KEY_ID) is None:
        await keys.insert(DEMO_PARTNER_KEY_ID, partner.id,
                          identity.keyring.seal(DEMO_PARTNER_KEY_SECRET, field="partner_keys.secret"),
                          frozenset(OPERATIONS), dt.datetime.now(dt.UTC))
    rules = PublishStore(db)
    if await rules.rule(partner.id) is None:
        await rules.save_rule(partner.id, "*", "patient,staff", 600, "demo", dt.datetime.now(dt.UTC))


async def seed_demo_schedule(schedule: Schedule, *, days: int = 7) -> int:
    """Open a week of morning and afternoon sessions for every demo doctor (once: only when no
    roster exists yet), through the real submit-and-approve flow. Returns rosters approved."""
    found = await schedule.store.unscheduled("admin")
    if found is None:
        return 0
    admin, rows = found
    assert admin is not None, "the demo admin is seeded first"
    today = dt.datetime.now(BEIJING).date()
    approved = 0
    for n, row in enumerate(rows, start=1):
        room = f"{row['name']}{n}诊室"
        sessions = [RosterSession(today + dt.timedelta(days=d), period, room) for d in range(days)
                    for period in ("am", "pm")]
        roster = await schedule.submit(RosterRequest("regular", sessions), admin, doctor_id=row["id"])
        await schedule.approve(roster["id"], admin)
        approved += 1
    return approved
