// 系统管理: the audit log (ADM-7), partners' signing keys (SCH-9), accounts and roles (ADM-1).
const G = '系统管理'
const page = (name) => () => import(`../pages/system/${name}.vue`)

export default [
  { path: '/system/audit', name: 'audit', component: page('AuditPage'), meta: { title: '审计日志', menu: { group: G, order: 90 } } },
  { path: '/system/partners', name: 'partners', component: page('PartnersPage'), meta: { title: '合作方密钥', menu: { group: G, order: 91 } } },
  { path: '/system/accounts', name: 'accounts', component: page('AccountsPage'), meta: { title: '账号管理', menu: { group: G, order: 92 } } },
  { path: '/system/roles', name: 'roles', component: page('RolesPage'), meta: { title: '角色权限', menu: { group: G, order: 93 } } },
]
