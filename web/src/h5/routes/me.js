// 我的: family members (ME-2), real-name verification through the provider's face check (ME-1),
// and the notice inbox fed by the delivery stream.
const page = (name) => () => import(`../pages/me/${name}.vue`)

export default [
  { path: '/me/patients', name: 'patients', component: page('PatientsPage'), meta: { title: '就诊人管理' } },
  { path: '/me/patients/new', name: 'patient-new', component: page('AddPatientPage'), meta: { title: '添加就诊人' } },
  // the face check's provider sends the person back here (CAREHUB_FACEID_REDIRECT_URL)
  { path: '/me/verify', name: 'verify-return', component: page('VerifyReturnPage'), meta: { title: '实名认证' } },
  { path: '/me/notices', name: 'notices', component: page('NoticesPage'), meta: { title: '消息' } },
]
