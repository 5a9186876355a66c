import { createApp } from 'vue'
import element from '../staff/element.js'
import App from './App.vue'

createApp(App).use(element).mount('#app')
