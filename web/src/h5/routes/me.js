// 我的: family members (ME-2), real-name verification through the provider's face check (ME-1),
// the notice inbox and the notice settings (MSG-1, OUT-15, ME-10).
const page = (name) => () => import(`../pages/me/${name}.vue`)

export default [
  { path: '/me/patients', name: 'patients', component: page('PatientsPage'), meta: { title: '就诊人管理' } },
  { path: '/me/patients/new', name: 'patient-new', component: page('AddPatientPage'), meta: { title: '添加就诊人' } },
  // the face check's provider sends the person back here (CAREHUB_FACEID_REDIRECT_URL)
  { path: '/me/verify', name: 'verify-return', component: page('VerifyReturnPage'), meta: { title: '实名认证' } },
  { path: '/me/notices', name: 'notices', component: page('NoticesPage'), meta: { title: '消息' } },
  {
    path: '/me/notice-preferences', name: 'notice-preferences', component: page('NoticePreferencesPage'),
    meta: { title: '通知设置' },
  },
  // the deep link of "payment succeeded" notices (carehub/messaging/kinds.py): the payment history
  { path: '/me/payments', name: 'me-payments', redirect: '/bills/orders' },
]
