"""Every kind of notice CareHub sends, with its template variables, audience and rules.

A *kind* is what happened ("booking.confirmed", "critical.value"); a notice of that kind is the
kind's template rendered with the event's values. The list is closed: publishers (CareHub's own
domains, the hospital's systems through the publish API) name a kind from here, and templates
are checked against the variables their kind provides when an admin saves them.

``category`` groups kinds for the patient's preferences (OUT-15: "booking and visit notices by
SMS: off"); ``critical`` kinds (critical values, escalated alerts) ignore preferences and quiet
hours. ``link`` is the deep link a notice opens, with the same ``{variables}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

Audience = Literal["patient", "staff"]

#: preference groups, in the order the patient app lists them (OUT-15)
CATEGORIES: Mapping[str, str] = {
    "visit": "预约与就诊",
    "payment": "缴费与退款",
    "pharmacy": "取药与用药",
    "report": "检查检验报告",
    "inpatient": "住院与手术",
    "reminder": "复诊与随访提醒",
    "consultation": "在线问诊",
    "education": "健康宣教",
    "hospital": "医院通知",
    "work": "工作提醒",
    "clinical": "危急值与临床警报",
}


@dataclasses.dataclass(frozen=True)
class NoticeKind:
    name: str
    label: str  # what the inbox and the admin console call it
    feature: str  # the feature ID (docs/features.md) it serves
    category: str
    audience: Audience
    variables: tuple[str, ...]
    title: str  # default templates (admins may edit them)
    body: str
    link: str | None = None
    critical: bool = False
    #: shown on the doctor's screen until acknowledged (clinical alerts, DOC-19 work items)
    needs_ack: bool = False


def _k(name: str, label: str, feature: str, category: str, variables: str, title: str, body: str,
       link: str | None = None, *, audience: Audience = "patient", critical: bool = False,
       needs_ack: bool = False) -> NoticeKind:
    return NoticeKind(name, label, feature, category, audience, tuple(variables.split()), title, body, link,
                      critical, needs_ack)


_BOOKING = "/h5/bookings/{booking_id}"
#: what a slot pool knows of every booking it tells about
_VISIT = "booking_id patient doctor time room department_id"
KINDS: Mapping[str, NoticeKind] = {k.name: k for k in (
    # outpatient (MSG-2, MSG-3, MSG-7): what the slot pools and waiting queues tell
    _k("booking.held", "预约待支付", "MSG-2", "visit", f"{_VISIT} minutes amount",
       "预约待支付", "{patient}，已为您锁定{doctor}医生{time}的号源，请在{minutes}分钟内支付挂号费{amount}。",
       _BOOKING),
    _k("booking.confirmed", "预约成功", "MSG-2", "visit", _VISIT,
       "预约成功", "{patient}，您已成功预约{doctor}医生{time}的号源，请按时到{room}签到就诊。", _BOOKING),
    _k("booking.released", "预约已释放", "MSG-2", "visit", _VISIT,
       "预约已取消", "{patient}，您预约的{doctor}医生{time}的号源超时未支付，已释放。", _BOOKING),
    _k("booking.cancelled", "停诊/取消通知", "MSG-2", "visit", f"{_VISIT} reason refund",
       "预约已取消", "{patient}，您预约的{doctor}医生{time}的号源已取消（{reason}）。{refund}", _BOOKING),
    _k("booking.substituted", "替诊通知", "MSG-2", "visit", f"{_VISIT} substitute reason",
       "就诊医生变更", "{patient}，您预约的{doctor}医生{time}的号源改由{substitute}医生出诊（{reason}）。"
       "如需取消可在预约记录中操作，费用原路退回。", _BOOKING),
    _k("booking.refunding", "退款处理中", "MSG-3", "payment", f"{_VISIT} reason amount",
       "预约已失效", "{patient}，您的预约已{reason}，已支付的{amount}将原路退回。", _BOOKING),
    _k("booking.refunded", "退款到账", "MSG-3", "payment", f"{_VISIT} amount",
       "退款成功", "{patient}，挂号费{amount}已原路退回，请注意查收。", _BOOKING),
    _k("payment.succeeded", "缴费成功", "MSG-3", "payment", f"{_VISIT} amount item order_id",
       "缴费成功", "{patient}，您已成功支付{item}{amount}。", "/h5/me/payments"),
    _k("bill.due", "待缴费", "OUT-15", "payment", "patient amount bill_id department",
       "您有待缴费用", "{patient}，您在{department}有{amount}待缴费用，点击即可缴费。", "/h5/bills?bill={bill_id}"),
    _k("queue.near", "候诊提醒", "MSG-7", "visit", "booking_id patient ahead room department",
       "即将到您就诊", "{patient}，您前面还有{ahead}位患者，请到{room}门口候诊。",
       "/h5/bookings/{booking_id}?nav={department}"),
    _k("queue.called", "叫号提醒", "MSG-7", "visit", "booking_id patient room department",
       "请您就诊", "{patient}，请到{room}就诊。", "/h5/bookings/{booking_id}?nav={department}"),
    _k("revisit.due", "复诊提醒", "MSG-7", "reminder", "patient department doctor date",
       "复诊提醒", "{patient}，{doctor}医生建议您于{date}到{department}复诊，可提前预约。", "/h5/booking"),
    # results, pharmacy, inpatient (MSG-4..6): published by the HIS/LIS/PACS through the publish API
    _k("medicine.ready", "取药通知", "MSG-4", "pharmacy", "patient window guidance",
       "药品已备好", "{patient}，您的药品已备好，请到{window}取药。用药指导：{guidance}", "/h5/me/notices"),
    _k("report.ready", "报告已出", "MSG-5", "report", "patient report department",
       "检查检验报告已出", "{patient}，您的{report}报告已出，可在线查看或到{department}咨询。", "/h5/me/notices"),
    _k("inpatient.admitted", "入院通知", "MSG-6", "inpatient", "patient ward bed",
       "入院通知", "{patient}，您已办理入院，病区{ward}，床位{bed}。", "/h5/me/notices"),
    _k("inpatient.discharged", "出院通知", "MSG-6", "inpatient", "patient ward advice",
       "出院通知", "{patient}，您已从{ward}出院。出院医嘱：{advice}", "/h5/me/notices"),
    _k("inpatient.surgery", "手术通知", "MSG-6", "inpatient", "patient surgery time place",
       "手术安排通知", "{patient}，您的{surgery}安排在{time}，地点{place}，请按医嘱做好术前准备。", "/h5/me/notices"),
    _k("followup.due", "随访提醒", "MSG-7", "reminder", "patient doctor plan",
       "随访提醒", "{patient}，{doctor}医生邀请您完成随访：{plan}", "/h5/me/notices"),
    _k("lifestyle.guidance", "生活指导", "MSG-8", "education", "patient title content",
       "{title}", "{patient}，{content}", "/h5/me/notices"),
    _k("education", "健康宣教", "ME-10", "education", "patient title content",
       "{title}", "{content}", "/h5/me/notices"),
    _k("hospital.notice", "医院通知", "MSG-1", "hospital", "title content",
       "{title}", "{content}", "/h5/me/notices"),
    # online consultation (CON-19), published by the consultation domain
    _k("consultation.requested", "问诊已提交", "CON-19", "consultation", "patient doctor consultation_id",
       "问诊申请已提交", "{patient}，您向{doctor}医生的问诊申请已提交，医生接诊后会通知您。",
       "/h5/consultations/{consultation_id}"),
    _k("consultation.accepted", "医生已接诊", "CON-19", "consultation", "patient doctor consultation_id",
       "医生已接诊", "{patient}，{doctor}医生已接诊，请进入问诊。", "/h5/consultations/{consultation_id}"),
    _k("consultation.prescribed", "处方已开具", "CON-19", "consultation", "patient doctor consultation_id",
       "处方已开具", "{patient}，{doctor}医生已为您开具处方，请查看并缴费。", "/h5/consultations/{consultation_id}"),
    _k("consultation.rate", "评价提醒", "CON-19", "consultation", "patient doctor consultation_id",
       "请评价本次问诊", "{patient}，您与{doctor}医生的问诊已结束，欢迎评价。", "/h5/consultations/{consultation_id}"),
    # staff (DOC-19, MSG-7): work items and clinical alerts, acknowledged on the workstation
    _k("consultation.waiting", "新问诊待接诊", "DOC-19", "work", "doctor patient consultation_id",
       "新问诊待接诊", "{doctor}医生，患者{patient}的问诊等待您接诊。", "/doctor/consultations/{consultation_id}",
       audience="staff", needs_ack=True),
    _k("work.item", "工作提醒", "DOC-19", "work", "doctor title content",
       "{title}", "{doctor}医生，{content}", "/doctor", audience="staff"),
    _k("critical.value", "危急值", "MSG-7", "clinical", "doctor patient item value flag department alert_id",
       "危急值警报", "{doctor}医生：患者{patient}的{item}结果{value}（{flag}），请立即处理并确认。",
       "/doctor/alerts/{alert_id}", audience="staff", critical=True, needs_ack=True),
)}


def kind(name: str) -> NoticeKind | None:
    return KINDS.get(name)
