// 统计报表 (SCH-8, STAT-1, STAT-4): bookings, attendance, no-shows, sessions per doctor, payments by method.
export default [
  {
    path: '/statistics',
    name: 'statistics',
    component: () => import('../pages/statistics/StatisticsPage.vue'),
    meta: { title: '预约与支付统计', menu: { group: '统计报表', order: 50 } },
  },
]
