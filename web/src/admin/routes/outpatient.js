// 门诊管理 (issue 17, SCH-2..7, SCH-10): roster approvals, sessions a doctor cannot come to (cancel or
// substitute), slot rules, booking records, the blacklist and the no-show rule.
const GROUP = '门诊管理'
const page = (path, name, title, order, load) => ({ path, name, component: load, meta: { title, menu: { group: GROUP, order } } })

export default [
  page('/outpatient/rosters', 'outpatient-rosters', '排班审批', 30, () => import('../pages/outpatient/RostersPage.vue')),
  page('/outpatient/sessions', 'outpatient-sessions', '停诊与替诊', 31, () => import('../pages/outpatient/SessionsPage.vue')),
  page('/outpatient/slot-rules', 'outpatient-slot-rules', '号源规则', 32, () => import('../pages/outpatient/SlotRulesPage.vue')),
  page('/outpatient/bookings', 'outpatient-bookings', '预约记录', 33, () => import('../pages/outpatient/BookingsPage.vue')),
  page('/outpatient/blacklist', 'outpatient-blacklist', '黑名单与爽约规则', 34, () => import('../pages/outpatient/BlacklistPage.vue')),
]
