// 危急值警报 (MSG-7, DOC-19): my open clinical alerts and one alert with its steps. The banner that
// keeps open alerts on every page is in App.vue (pages/alerts/AlertBanner.vue).
export default [
  { path: '/alerts', name: 'alerts', component: () => import('../pages/alerts/AlertsPage.vue'), meta: { title: '危急值警报', menu: { order: 3 } } },
  { path: '/alerts/:id', name: 'alert', component: () => import('../pages/alerts/AlertPage.vue'), meta: { title: '警报详情' } },
]
