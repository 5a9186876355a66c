// What the content and system pages of the console share: the Element Plus components they use
// beyond the common ones (web/src/staff/element.js), each with its own stylesheet, and small helpers.
import { ElMessage } from 'element-plus'
import { ApiError, readableMessage } from '@shared/api.js'
import { formatDateTime } from '@shared/format.js'
import { staff } from '../../staff.js'

import 'element-plus/es/components/dialog/style/css'
import 'element-plus/es/components/loading/style/css'
import 'element-plus/es/components/select/style/css'
import 'element-plus/es/components/option/style/css'
import 'element-plus/es/components/switch/style/css'
import 'element-plus/es/components/date-picker/style/css'
import 'element-plus/es/components/input-number/style/css'
import 'element-plus/es/components/popconfirm/style/css'
import 'element-plus/es/components/checkbox/style/css'
import 'element-plus/es/components/checkbox-group/style/css'
import 'element-plus/es/components/tabs/style/css'
import 'element-plus/es/components/tab-pane/style/css'
import 'element-plus/es/components/descriptions/style/css'
import 'element-plus/es/components/descriptions-item/style/css'

export {
  ElCheckbox, ElCheckboxGroup, ElDatePicker, ElDescriptions, ElDescriptionsItem, ElDialog, ElInputNumber, ElOption,
  ElPopconfirm, ElSelect, ElSwitch, ElTabPane, ElTabs, vLoading,
} from 'element-plus'

/** "2026/12/04 09:30" in Shanghai time, or "—". */
export const when = (at) => (at ? formatDateTime(at) : '—')

/** 1250 fen -> "¥12.50". */
export const yuan = (fen) => (fen === null || fen === undefined ? '—' : `¥${(fen / 100).toFixed(2)}`)

/** A short success notice. */
export const saved = (text = '已保存') => ElMessage({ type: 'success', message: text, duration: 2000 })

/** A failure notice with the server's Chinese text. */
export const failed = (err) => ElMessage({ type: 'error', message: err?.message ?? String(err), duration: 5000 })

/**
 * A request whose body is not JSON (a CSV file), or whose answer is not JSON (a CSV export): the
 * bearer token goes in the header, never in the URL. Resolves to the Response when it is OK; a failure
 * is an ApiError with the server's message and `payload` (its JSON body, e.g. an import's lines).
 */
export async function rawRequest(method, path, { body, contentType } = {}) {
  const headers = {}
  if (staff.session.token) headers.Authorization = `Bearer ${staff.session.token}`
  if (contentType) headers['Content-Type'] = contentType
  let response
  try {
    response = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' })
  } catch {
    throw new ApiError(0, 'network', '网络连接失败，请检查网络后重试')
  }
  if (response.ok) return response
  let payload = null
  try {
    payload = await response.json()
  } catch {
    payload = null
  }
  const error = payload?.error
  const err = new ApiError(response.status, error?.code ?? `http_${response.status}`,
    error?.message ? readableMessage(error.message) : `请求失败（${response.status}）`)
  err.payload = payload
  throw err
}

/** Save a fetched file (a Blob) under `filename` through a temporary object URL. */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob)
  const link = document.createElement('a')
  link.href = url
  link.download = filename
  document.body.append(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
}

/** The fields of `form` that differ from `original` (for a PATCH). */
export function changedFields(form, original) {
  const changes = {}
  for (const [key, value] of Object.entries(form)) {
    if (JSON.stringify(value) !== JSON.stringify(original?.[key])) changes[key] = value
  }
  return changes
}

/** Element Plus form rules: required, with a Chinese message. */
export const required = (what) => ({ required: true, message: `请填写${what}`, trigger: 'blur' })

/** An id as the server accepts it (letters, digits, _ and -). */
export const idRule = (what) => ({
  pattern: /^[A-Za-z0-9_-]{1,32}$/, message: `${what}只能包含字母、数字、下划线和短横线（最多 32 位）`, trigger: 'blur',
})
