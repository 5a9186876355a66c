import { createApp } from 'vue'
import App from './App.vue'
import vant from './vant.js'
import { router } from './router.js'
import { onSignedOut, startLive } from './session.js'
import './app.css'

const app = createApp(App)
app.use(vant)
app.use(router)
onSignedOut(() => {
  if (router.currentRoute.value.name !== 'login') router.replace({ name: 'login' })
})
startLive()
app.mount('#app')
