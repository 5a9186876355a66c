// The notice inbox: the signed-in person's delivery stream (docs/protocol.md), the recent history
// read over REST (GET /api/v1/me/stream) and new notices live from the page's /ws connection
// (liveClient()'s `deliver` events, which resume after a reconnect with no gap and no repeat).
//
// Read marks: the server keeps no read state for stream messages, so they are kept per account
// in this browser's localStorage (`carehub.h5.inbox.read.<account id>`, the ids of the messages
// read, the newest 500). Another phone of the same person starts with them unread (web/README.md).
import { computed, reactive, watch } from 'vue'
import { api, live, liveClient } from '../../session.js'

const HISTORY = 50
const KEEP_READ = 500

const state = reactive({ account: null, items: [], read: new Set(), loaded: false, loading: false, error: '' })
let attached = null
let unsubscribe = null

const readKey = (account) => `carehub.h5.inbox.read.${account}`

function loadRead(account) {
  try {
    const ids = JSON.parse(localStorage.getItem(readKey(account)) ?? '[]')
    return new Set(Array.isArray(ids) ? ids : [])
  } catch {
    return new Set()
  }
}

function saveRead() {
  if (!state.account) return
  try {
    localStorage.setItem(readKey(state.account), JSON.stringify([...state.read].slice(-KEEP_READ)))
  } catch {
    // storage full or private mode: marks last for this visit
  }
}

/** Reset when another account signs in. */
function forAccount() {
  const account = live.account?.id ?? null
  if (account === state.account) return
  state.account = account
  state.items = []
  state.read = account ? loadRead(account) : new Set()
  state.loaded = false
  state.error = ''
}

function add(message) {
  if (!message || state.items.some((m) => m.id === message.id)) return
  const item = { seq: message.seq, id: message.id, type: message.type, at: message.at, body: message.body ?? {} }
  const at = state.items.findIndex((m) => m.seq < item.seq)
  if (at === -1) state.items.push(item)
  else state.items.splice(at, 0, item)
}

function attach() {
  const client = liveClient()
  if (client === attached) return
  unsubscribe?.()
  attached = client
  unsubscribe = client
    ? client.on('deliver', (message) => {
      forAccount()
      add(message)
    })
    : null
}

// the live client is made anew at sign-in: follow it
watch(() => [live.account?.id, live.connection], () => {
  forAccount()
  attach()
})

/** The recent history from the server (whatever arrived while no page was listening). */
export async function refresh() {
  forAccount()
  if (!state.account) return
  state.loading = true
  state.error = ''
  try {
    const me = await api('GET', '/api/v1/me')
    const after = Math.max(0, (me.stream?.last_seq ?? 0) - HISTORY)
    const { items } = await api('GET', `/api/v1/me/stream?after=${after}&limit=${HISTORY}`)
    for (const item of items) add(item)
    state.loaded = true
  } catch (err) {
    state.error = err.message
  } finally {
    state.loading = false
  }
}

const TITLES = {
  'chat.message': '问诊消息',
  'visit.step': '就诊提醒',
  'queue.near': '候诊提醒',
  'queue.called': '叫号提醒',
  'queue.missed': '过号提醒',
}
const STEPS = { paid: '已缴费，请按时到院签到', checked_in: '已签到，请留意叫号', called: '请到诊室就诊', seen: '就诊完成' }

export function title(item) {
  if (TITLES[item.type]) return TITLES[item.type]
  if (item.type.startsWith('booking.')) return '预约通知'
  if (item.type.startsWith('bill.') || item.type.startsWith('payment.')) return '缴费通知'
  return '通知'
}

export function text(item) {
  const body = item.body ?? {}
  if (body.text) return String(body.text)
  if (item.type === 'visit.step') return [STEPS[body.step] ?? body.step, body.room].filter(Boolean).join(' · ')
  return '您有一条新通知'
}

/** The inbox of the signed-in person: items newest first, unread count, marking read. */
export function useInbox() {
  forAccount()
  attach()
  if (!state.loaded && !state.loading) refresh()
  const unread = computed(() => state.items.filter((m) => !state.read.has(m.id)).length)

  function isRead(item) {
    return state.read.has(item.id)
  }

  function markRead(item) {
    if (state.read.has(item.id)) return
    state.read = new Set([...state.read, item.id])
    saveRead()
  }

  function markAllRead() {
    state.read = new Set([...state.read, ...state.items.map((m) => m.id)])
    saveRead()
  }

  return { state, unread, isRead, markRead, markAllRead, refresh }
}
