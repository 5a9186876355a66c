// What the booking pages share: money and status words, the days to choose from, and the live
// connection's events for the page that is open (deliveries, topic events, reconnects).
import { onBeforeUnmount, onMounted } from 'vue'
import { liveClient } from '../../session.js'

export const TIME_ZONE = 'Asia/Shanghai'

/** 500 -> "¥5.00" */
export const yuan = (fen) => `¥${(Number(fen || 0) / 100).toFixed(2)}`

export const PERIOD_NAMES = { am: '上午', pm: '下午', night: '夜间' }

export const STATUS_NAMES = {
  held: '待支付',
  booked: '已预约',
  checked_in: '已签到',
  seen: '已就诊',
  cancelled: '已取消',
  released: '已超时释放',
  no_show: '已爽约',
}

export const STATUS_TAGS = {
  held: 'warning', booked: 'primary', checked_in: 'success', seen: 'success', cancelled: 'default', released: 'default',
  no_show: 'danger',
}

/** The visit assistant's steps (OUT-8), in the server's order. */
export const STEP_NAMES = { booked: '预约', paid: '缴费', checked_in: '签到', called: '叫号', seen: '完成' }

const dayKey = new Intl.DateTimeFormat('en-CA', { timeZone: TIME_ZONE, year: 'numeric', month: '2-digit', day: '2-digit' })
const dayLabel = new Intl.DateTimeFormat('zh-CN', { timeZone: TIME_ZONE, month: 'numeric', day: 'numeric' })
const weekday = new Intl.DateTimeFormat('zh-CN', { timeZone: TIME_ZONE, weekday: 'short' })

/** Today and the next days in Shanghai: [{ day: 'YYYY-MM-DD', label: '今天' | '周六', date: '12/5' }] */
export function nextDays(count = 7, now = new Date()) {
  const days = []
  for (let i = 0; i < count; i += 1) {
    const at = new Date(now.getTime() + i * 86400000)
    days.push({ day: dayKey.format(at), label: i === 0 ? '今天' : i === 1 ? '明天' : weekday.format(at), date: dayLabel.format(at) })
  }
  return days
}

export const todayKey = () => dayKey.format(new Date())

/** A client reference for one booking intent: a retried tap sends the same one and books once. */
export function newClientRef() {
  const bytes = new Uint8Array(12)
  crypto.getRandomValues(bytes)
  return `h5-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`
}

/**
 * Listen to the live connection while the page is open: `deliver` (the person's stream),
 * `event` (topics), `open` (connected again: what moved meanwhile must be read again).
 * `topics()` names the topics to join; call `resubscribe()` when they change.
 */
export function useLive({ deliver, event, open, topics = () => [] } = {}) {
  let offs = []
  let joined = new Map()

  function sync() {
    const hub = liveClient()
    if (!hub) return
    const wanted = new Set(topics().filter(Boolean))
    for (const [topic, leave] of joined) {
      if (!wanted.has(topic)) {
        leave()
        joined.delete(topic)
      }
    }
    for (const topic of wanted) if (!joined.has(topic)) joined.set(topic, hub.subscribe(topic))
  }

  onMounted(() => {
    const hub = liveClient()
    if (!hub) return
    if (deliver) offs.push(hub.on('deliver', deliver))
    if (event) offs.push(hub.on('event', event))
    if (open) offs.push(hub.on('state', ({ state, previous }) => { if (state === 'open' && previous !== 'open') open() }))
    sync()
  })
  onBeforeUnmount(() => {
    for (const off of offs) off()
    for (const leave of joined.values()) leave()
    offs = []
    joined = new Map()
  })
  return { resubscribe: sync }
}
