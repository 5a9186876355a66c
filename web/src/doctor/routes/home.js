// The workstation's home: the doctor's own clinic sessions (today and the coming days). Each area
// has a file in routes/ (a default-exported list; `meta.menu` puts a route in the side menu).
export default [
  { path: '/', name: 'home', component: () => import('../pages/HomePage.vue'), meta: { title: '我的出诊', menu: { order: 0 } } },
]
