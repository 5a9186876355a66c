// 通知设置 (DOC-19, OUT-15): the doctor's alert channels, in order, and quiet hours; critical values
// reach every channel whatever is chosen here.
export default [
  { path: '/settings/notices', name: 'notice-settings', component: () => import('../pages/settings/NoticeSettingsPage.vue'), meta: { title: '通知设置', menu: { order: 9 } } },
]
