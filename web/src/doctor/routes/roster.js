// 我的排班 (DOC-27): ask for leave, an extra session or submit a roster; the decisions.
export default [
  { path: '/roster', name: 'roster', component: () => import('../pages/roster/RosterPage.vue'), meta: { title: '我的排班', menu: { order: 2 } } },
]
