// Clinical alerts of the signed-in doctor (MSG-7, DOC-19), one store for the whole workstation: the
// banner on every page (AlertBanner.vue) and the 危急值警报 page read the same list. It is read from
// GET /api/v1/doctor/alerts when someone signs in, whenever the live connection comes back, and on
// every delivery that concerns an alert (alert.raised / alert.updated from the alert actor, or a
// notice of a kind that needs an acknowledgement), so a new or escalated alert shows without a
// reload and an alert acknowledged on another workstation goes away everywhere.
import { reactive, watch } from 'vue'
import { ElMessage } from 'element-plus'
import 'element-plus/es/components/message/style/css'
import { deviceId } from '@shared/session.js'
import { formatTime } from '@shared/format.js'
import { api, staff } from '../../staff.js'

export const ALERT_TYPES = new Set(['alert.raised', 'alert.updated'])
export const ACK_KINDS = new Set(['critical.value', 'consultation.waiting'])
export const STATUS = { open: '待确认', escalated: '已升级', unanswered: '无人确认', acknowledged: '已确认' }
export const ACTIONS = { raised: '触发', notified: '已通知', escalated: '升级', acknowledged: '确认收到', unanswered: '无人确认' }
export const KIND_LABELS = { 'critical.value': '危急值', 'consultation.waiting': '新问诊待接诊' }

/** Whether a delivery of the live stream concerns an alert (the list is read again). */
export function isAlertDelivery(message) {
  return ALERT_TYPES.has(message?.type) || (message?.type === 'notice' && ACK_KINDS.has(message.body?.kind))
}

/** This browser's device id, sent with every acknowledgement (the proof names the device). */
export const device = () => deviceId(localStorage, 'doctor')

export const alerts = reactive({ items: [], error: '', busy: '', loaded: false })

let reading = null
let again = false
export function refresh() {
  if (!staff.live.account) return Promise.resolve()
  if (reading) {
    again = true
    return reading
  }
  reading = (async () => {
    do {
      again = false
      try {
        alerts.items = (await api('GET', '/api/v1/doctor/alerts')).items
        alerts.error = ''
        alerts.loaded = true
      } catch (err) {
        alerts.error = err.message
      }
    } while (again)
    reading = null
  })()
  return reading
}

export async function acknowledge(alert) {
  alerts.busy = alert.id
  try {
    const done = await api('POST', `/api/v1/doctor/alerts/${encodeURIComponent(alert.id)}/ack`, { device: device() })
    ElMessage.success(`已确认收到（${formatTime(done.acked_at)}）`)
  } catch (err) {
    ElMessage.error(err.message)
  } finally {
    alerts.busy = ''
    await refresh()
  }
}

let started = false
let stops = []
/** Follow the signed-in doctor's alerts (once per page load). */
export function followAlerts() {
  if (started) return
  started = true
  watch(
    () => staff.live.account?.id,
    (accountId) => {
      stops.forEach((stop) => stop())
      stops = []
      alerts.items = []
      alerts.loaded = false
      if (!accountId) return
      const hub = staff.liveClient()
      if (hub) {
        stops.push(hub.on('deliver', (message) => { if (isAlertDelivery(message)) refresh() }))
        stops.push(hub.on('state', ({ state }) => { if (state === 'open') refresh() }))
      }
      refresh()
    },
    { immediate: true, flush: 'post' }, // after signIn() has opened the live connection
  )
}
