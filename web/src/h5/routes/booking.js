// The booking journey (issue 17; OUT-1, OUT-2, OUT-3, OUT-6, OUT-8, OUT-11, OUT-12, ME-5): triage,
// finding a doctor, a doctor's page (the shared card link /h5/doctors/<id>), booking, paying,
// the visit code, check-in, the live queue, and my bookings.
export default [
  { path: '/triage', name: 'triage', component: () => import('../pages/booking/TriagePage.vue'), meta: { title: '智能导诊', public: true } },
  { path: '/booking', name: 'booking-search', component: () => import('../pages/booking/SearchPage.vue'), meta: { title: '预约挂号', public: true } },
  {
    path: '/doctors/:id', name: 'doctor', component: () => import('../pages/booking/DoctorPage.vue'),
    meta: { title: '医生主页', public: true }, props: true,
  },
  { path: '/bookings', name: 'my-bookings', component: () => import('../pages/booking/MyBookingsPage.vue'), meta: { title: '我的预约' } },
  {
    path: '/bookings/:id', name: 'booking', component: () => import('../pages/booking/BookingPage.vue'),
    meta: { title: '预约详情' }, props: true,
  },
  { path: '/visits/today', name: 'visits-today', component: () => import('../pages/booking/VisitsTodayPage.vue'), meta: { title: '就诊助手' } },
]
