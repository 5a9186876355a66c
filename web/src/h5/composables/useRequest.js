// Load something from the API for a page: loading flag, data, and the server's message on failure
// (shown in the page, with a retry button; never a blank page).
import { ref } from 'vue'

export function useRequest(load) {
  const loading = ref(true)
  const data = ref(null)
  const error = ref('')

  async function run() {
    loading.value = true
    error.value = ''
    try {
      data.value = await load()
    } catch (err) {
      error.value = err?.message || '加载失败，请稍后重试'
    } finally {
      loading.value = false
    }
  }

  run()
  return { loading, data, error, reload: run }
}
