// The home page, sign-in, hospital and departments. Each area of the patient app has a file in
// routes/ (booking.js, bills.js, me.js, ...): router.js gathers them, so adding pages never edits a
// file another area owns. Pages load on demand: the home bundle carries only what home shows.
export default [
  { path: '/', name: 'home', component: () => import('../pages/HomePage.vue'), meta: { title: '智慧医院' } },
  { path: '/login', name: 'login', component: () => import('../pages/SignInPage.vue'), meta: { title: '登录', public: true } },
  { path: '/hospital', name: 'hospital', component: () => import('../pages/HospitalPage.vue'), meta: { title: '医院介绍' } },
  { path: '/departments', name: 'departments', component: () => import('../pages/DepartmentsPage.vue'), meta: { title: '科室导航' } },
  {
    path: '/departments/:id', name: 'department', component: () => import('../pages/DepartmentPage.vue'),
    meta: { title: '科室详情' }, props: true,
  },
  { path: '/me', name: 'me', component: () => import('../pages/MePage.vue'), meta: { title: '我的' } },
]
