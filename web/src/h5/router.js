import { createRouter, createWebHistory } from 'vue-router'
import { session } from './session.js'

// Pages load on demand: the home page's bundle carries only what the home page shows.
const routes = [
  { path: '/', name: 'home', component: () => import('./pages/HomePage.vue'), meta: { title: '智慧医院' } },
  { path: '/login', name: 'login', component: () => import('./pages/SignInPage.vue'), meta: { title: '登录', public: true } },
  { path: '/hospital', name: 'hospital', component: () => import('./pages/HospitalPage.vue'), meta: { title: '医院介绍' } },
  { path: '/departments', name: 'departments', component: () => import('./pages/DepartmentsPage.vue'), meta: { title: '科室导航' } },
  {
    path: '/departments/:id', name: 'department', component: () => import('./pages/DepartmentPage.vue'),
    meta: { title: '科室详情' }, props: true,
  },
  { path: '/me', name: 'me', component: () => import('./pages/MePage.vue'), meta: { title: '我的' } },
  { path: '/:rest(.*)*', name: 'not-found', component: () => import('./pages/NotFoundPage.vue'), meta: { title: '页面不存在', public: true } },
]

export const router = createRouter({
  history: createWebHistory('/h5/'),
  routes,
  scrollBehavior: (to, from, saved) => saved ?? { top: 0 },
})

router.beforeEach((to) => {
  if (!to.meta.public && !session.get()) {
    // where to come back to is a path of this app, never a token
    return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  }
  return true
})

router.afterEach((to) => {
  document.title = `${to.meta.title ?? '智慧医院'} - 患者服务`
})
