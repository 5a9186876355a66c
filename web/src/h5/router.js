import { createRouter, createWebHistory } from 'vue-router'
import { session } from './session.js'

// Every area's routes (routes/*.js, each a default-exported list), then the catch-all.
const areas = import.meta.glob('./routes/*.js', { eager: true, import: 'default' })
const routes = [
  ...Object.keys(areas).sort().flatMap((file) => areas[file]),
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
