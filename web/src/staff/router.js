// The router of a staff app: its sign-in page, its areas' routes (routes/*.js of the app, each a
// default-exported list; a route with `meta.menu` appears in the side menu), a not-found page.
import { createRouter, createWebHistory } from 'vue-router'
import SignInPage from './SignInPage.vue'

/**
 * @param {object} options
 * @param {string} options.base e.g. '/doctor/'
 * @param {string} options.title the app's name (sign-in page, window title)
 * @param {object} options.staff createStaffSession(...)
 * @param {Record<string, object[]>} options.areas import.meta.glob('./routes/*.js', { eager: true, import: 'default' })
 */
export function createStaffRouter({ base, title, staff, areas }) {
  const routes = [
    { path: '/login', name: 'login', component: SignInPage, props: { staff, title }, meta: { title: '登录', public: true } },
    ...Object.keys(areas).sort().flatMap((file) => areas[file]),
    { path: '/:rest(.*)*', name: 'not-found', component: () => import('./NotFoundPage.vue'), meta: { title: '页面不存在' } },
  ]
  const router = createRouter({ history: createWebHistory(base), routes })
  router.beforeEach((to) => {
    if (!to.meta.public && !staff.session.get()) {
      return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
    }
    return true
  })
  router.afterEach((to) => {
    document.title = `${to.meta.title ?? title} - ${title}`
  })
  staff.onSignedOut(() => {
    if (router.currentRoute.value.name !== 'login') router.replace({ name: 'login' })
  })
  return router
}

/** The side menu: routes with `meta.menu` ({ group?, order? }) in their order. */
export function menuOf(router) {
  return router
    .getRoutes()
    .filter((r) => r.meta?.menu)
    .sort((a, b) => (a.meta.menu.order ?? 100) - (b.meta.menu.order ?? 100))
    .map((r) => ({ path: r.path, title: r.meta.title, group: r.meta.menu.group ?? '' }))
}
