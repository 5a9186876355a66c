// 候诊叫号 (DOC-1, OUT-12): the live waiting list of one session; ?day=YYYY-MM-DD&period=am|pm|night
// (default: the session of today in progress, or the next one).
export default [
  { path: '/queue', name: 'queue', component: () => import('../pages/queue/QueuePage.vue'), meta: { title: '候诊叫号', menu: { order: 1 } } },
]
