// 系统管理: the audit log (ADM-7), partners' signing keys (SCH-9), roles.
const G = '系统管理'
const page = (name) => () => import(`../pages/system/${name}.vue`)

export default [
  { path: '/system/audit', name: 'audit', component: page('AuditPage'), meta: { title: '审计日志', menu: { group: G, order: 90 } } },
  { path: '/system/partners', name: 'partners', component: page('PartnersPage'), meta: { title: '合作方密钥', menu: { group: G, order: 91 } } },
]
