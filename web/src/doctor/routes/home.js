// The workstation's home. Each area has a file in routes/ (a default-exported list; `meta.menu`
// puts a route in the side menu): the router gathers them.
export default [
  { path: '/', name: 'home', component: () => import('../pages/HomePage.vue'), meta: { title: '首页', menu: { order: 0 } } },
]
