"""The demo hospital's directory content (campuses, floors, guide, prices, triage rules), seeded by
:mod:`carehub.demo`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from ..db import Database
from .departments import refresh_places

_DEMO_CAMPUSES = [
    ("main", "本部院区", "北京市东城区示范路1号", "010-65000000", "https://map.example.cn/carehub/main", 0),
    ("east", "东院区", "北京市朝阳区东坝路88号", "010-65000888", "https://map.example.cn/carehub/east", 1),
]


_DEMO_FLOORS = [
    ("main-op-1", "main", "门诊楼", "1层", 1), ("main-op-2", "main", "门诊楼", "2层", 2),
    ("main-op-3", "main", "门诊楼", "3层", 3), ("east-s-2", "east", "外科楼", "2层", 2),
    ("east-s-4", "east", "外科楼", "4层", 4),
]


#: department -> (floor, room) of the demo departments seeded by carehub.demo
_DEMO_PLACES = {
    "cardio": ("main-op-3", "A区"), "resp": ("main-op-3", "B区"), "peds": ("main-op-2", ""),
    "ortho": ("east-s-4", ""), "derm": ("east-s-2", ""),
}


_DEMO_GUIDE = [
    ("registration", "挂号须知", "可通过微信小程序、自助机或人工窗口挂号。首次就诊请携带身份证建档。", 0),
    ("visit", "就诊流程", "预约 → 到院签到 → 候诊叫号 → 就诊 → 缴费 → 检查/取药。", 1),
    ("insurance", "医保报销", "持医保电子凭证或社保卡结算，异地就医请先办理备案。", 2),
]


_DEMO_PRICES = [
    ("GH001", "普通门诊诊查费", "挂号诊查", "次", 1000), ("GH002", "副主任医师诊查费", "挂号诊查", "次", 2500),
    ("GH003", "主任医师诊查费", "挂号诊查", "次", 4000), ("GH004", "急诊诊查费", "挂号诊查", "次", 1500),
    ("JY001", "血常规", "检验", "项", 2000), ("JY002", "尿常规", "检验", "项", 1500),
    ("JY003", "肝功能", "检验", "组", 6000), ("JY004", "血脂四项", "检验", "组", 4800),
    ("JY005", "糖化血红蛋白", "检验", "项", 6500), ("JC001", "胸部正位 X 线摄影", "检查", "次", 8000),
    ("JC002", "心电图", "检查", "次", 2500), ("JC003", "腹部彩超", "检查", "次", 18000),
    ("JC004", "头颅 CT 平扫", "检查", "次", 30000), ("JC005", "膝关节 MRI", "检查", "次", 58000),
    ("ZL001", "静脉输液", "治疗", "次", 1200), ("ZL002", "肌肉注射", "治疗", "次", 500),
    ("ZL003", "清创缝合(小)", "治疗", "次", 9000), ("ZL004", "雾化吸入", "治疗", "次", 1600),
    ("CW001", "普通病房床位费", "床位", "日", 5000), ("CW002", "双人病房床位费", "床位", "日", 8000),
]


_DEMO_TRIAGE: list[tuple[str, str, str, str | None, int | None, int | None, int, tuple[str, ...]]] = [
    ("chest-pain", "胸部", "胸痛,胸闷,心悸,心慌", None, None, None, 10, ("cardio", "resp")),
    ("chest-cough", "胸部", "咳嗽,咳痰,气短,喘", None, 15, None, 5, ("resp",)),
    ("child-cough", "胸部", "咳嗽,发热,喘", None, 0, 14, 20, ("peds",)),
    ("head-dizzy", "头部", "头晕,头痛,血压高", None, None, None, 0, ("cardio",)),
    ("child-fever", "全身", "发热,发烧,咳嗽,腹泻", None, 0, 14, 20, ("peds",)),
    ("adult-fever", "全身", "发热,发烧,乏力", None, 15, None, 0, ("resp",)),
    ("skin-rash", "皮肤", "皮疹,瘙痒,湿疹,痘,脱皮", None, None, None, 10, ("derm",)),
    ("child-rash", "皮肤", "皮疹,湿疹", None, 0, 14, 15, ("peds", "derm")),
    ("knee", "下肢", "膝痛,关节痛,扭伤,肿胀", None, None, None, 10, ("ortho",)),
    ("leg-fracture", "下肢", "骨折,外伤,不能行走", None, None, None, 20, ("ortho",)),
    ("arm", "上肢", "关节痛,扭伤,骨折,麻木", None, None, None, 10, ("ortho",)),
    ("back", "腰背部", "腰痛,背痛,腰椎,活动受限", None, None, None, 10, ("ortho",)),
    ("neck", "颈部", "颈痛,颈椎,落枕,手麻", None, None, None, 10, ("ortho",)),
    ("throat", "颈部", "咽痛,嗓子疼,咳嗽", None, None, None, 5, ("resp",)),
    ("edema", "下肢", "水肿,浮肿,气短", None, 40, None, 5, ("cardio",)),
]


async def seed_directory_demo(conn: asyncpg.Connection) -> None:
    """The demo hospital's directory content, after carehub.demo seeded its departments and doctors."""
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        "INSERT INTO hospital_info (id, name, intro, address, phone, updated_at) VALUES (1, $1, $2, $3, $4, $5)",
        "CareHub 示范医院",
        "CareHub 示范医院是一所集医疗、教学、科研、预防于一体的三级甲等综合医院，设本部与东院区两个院区。",
        "北京市东城区示范路1号", "010-65000000", now,
    )
    await conn.executemany(
        "INSERT INTO hospital_images (sort_order, url, caption) VALUES ($1, $2, $3)",
        [(0, "https://cdn.example.cn/carehub/hospital-front.jpg", "医院正门"),
         (1, "https://cdn.example.cn/carehub/outpatient-hall.jpg", "门诊大厅")],
    )
    await conn.executemany(
        "INSERT INTO directory_settings (name, value, updated_at) VALUES ($1, $2, $3)",
        [("map_url", "https://map.example.cn/carehub", now), ("triage_url", "https://triage.example.cn/carehub", now)],
    )
    await conn.executemany(
        "INSERT INTO campuses (id, name, address, phone, map_url, sort_order) VALUES ($1, $2, $3, $4, $5, $6)",
        _DEMO_CAMPUSES,
    )
    await conn.executemany(
        "INSERT INTO floors (id, campus_id, building, name, floor_level, plan_url) VALUES ($1, $2, $3, $4, $5, '')",
        _DEMO_FLOORS,
    )
    await conn.executemany(
        "UPDATE departments SET floor_id = $2, room = $3 WHERE id = $1",
        [(d, floor, room) for d, (floor, room) in _DEMO_PLACES.items()],
    )
    await refresh_places(conn, "floor_id IS NOT NULL")
    await conn.execute("UPDATE doctors SET expert = true WHERE title = '主任医师'")
    await conn.execute(
        "INSERT INTO news (id, title, summary, body, cover_url, published_at, hidden, updated_at)"
        " VALUES ('demo-news-1', $1, $2, $3, '', $4, false, $4)",
        "东院区骨科病房启用", "东院区外科楼4层骨科病房正式启用。", "东院区外科楼4层骨科病房正式启用，新增床位40张。",
        now - dt.timedelta(days=3),
    )
    await conn.executemany(
        "INSERT INTO guide_pages (slug, title, body, sort_order, hidden, updated_at)"
        " VALUES ($1, $2, $3, $4, false, $5)",
        [(*page, now) for page in _DEMO_GUIDE],
    )
    await conn.execute(
        "INSERT INTO announcements (id, title, body, starts_at, ends_at, withdrawn, created_at, updated_at)"
        " VALUES ('demo-notice-1', $1, $2, $3, $4, false, $3, $3)",
        "门诊时间调整", "自即日起，本部院区门诊周六上午照常开诊。", now - dt.timedelta(days=1),
        now + dt.timedelta(days=365),
    )
    await conn.executemany(
        "INSERT INTO price_items (code, name, category, unit, price_fen, active, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, true, $6)",
        [(*item, now) for item in _DEMO_PRICES],
    )
    await conn.executemany(
        "INSERT INTO price_changes (code, changed_at, new_name, new_category, new_unit, new_price_fen, new_active)"
        " VALUES ($1, $6, $2, $3, $4, $5, true)",
        [(*item, now) for item in _DEMO_PRICES],
    )
    await conn.executemany(
        "INSERT INTO triage_rules (id, body_part, keywords, sex, min_age, max_age, priority, note, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8)",
        [(*rule[:7], now) for rule in _DEMO_TRIAGE],
    )
    await conn.executemany(
        "INSERT INTO triage_rule_departments (rule_id, department_id, sort_order) VALUES ($1, $2, $3)",
        [(rule[0], d, i) for rule in _DEMO_TRIAGE for i, d in enumerate(rule[7])],
    )


async def seed_demo_hospital(
    db: Database,
    departments: Sequence[tuple[str, str, str, str]],
    doctors: Sequence[tuple[str, str, str, str]],
    credentials: Sequence[tuple[str, str, str, int, str]],
) -> None:
    """The demo hospital in one transaction: departments ``(id, name, campus, location)``, doctors'
    entries ``(account, department, title, specialty)``, staff credentials ``(account, certificate,
    title, years, profession)``, then the directory content of :func:`seed_directory_demo`."""

    async def op(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO departments (id, name, campus, location) VALUES ($1, $2, $3, $4)", departments
            )
            await conn.executemany(
                "INSERT INTO doctors (account_id, department_id, title, specialty) VALUES ($1, $2, $3, $4)", doctors
            )
            await conn.executemany(
                "INSERT INTO staff_credentials (account_id, certificate_no, title, years_of_practice, profession,"
                " verified_at) VALUES ($1, $2, $3, $4, $5, now())",
                credentials,
            )
            await seed_directory_demo(conn)

    await db.run(op)
