import { createApp } from 'vue'
import element from '../staff/element.js'
import { createStaffRouter } from '../staff/router.js'
import App from './App.vue'
import { staff } from './staff.js'

const router = createStaffRouter({
  base: '/admin/',
  title: '管理后台',
  staff,
  areas: import.meta.glob('./routes/*.js', { eager: true, import: 'default' }),
})
staff.startLive()
createApp(App).use(element).use(router).mount('#app')
