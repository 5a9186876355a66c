// The notice inbox (MSG-1, OUT-15, ME-10): the server's inbox of the signed-in person, its unread
// count, and new notices live from the page's /ws connection.
//
// - The list is GET /api/v1/me/notices, newest first, paged by its `next` cursor (`before`), one
//   filter at a time: all, unread only, or one category (健康宣教 is ME-10: education sent to me).
// - Read state is the server's (POST /api/v1/me/notices/read): a notice read on one phone is read
//   on every other one. The counts come from the server (GET /api/v1/me/notices/counts, and every
//   inbox and mark-read answer); a live notice adds one at once and the server's figure follows.
// - Live: every notice is also a delivery of type "notice" on the account's stream (docs/protocol.md);
//   liveClient()'s `deliver` events resume after a reconnect with no gap and no repeat, and the
//   inbox drops a notice it already shows (by notice id), so each appears once.
// - NAV-2: the indoor-navigation link (`nav`) of a notice naming a department is on its inbox row
//   and in its delivery's body.
import { computed, reactive, watch } from 'vue'
import { State } from '@shared/carehub-ws.js'
import { api, live, liveClient } from '../../session.js'

const PAGE = 20
/** staff-only categories: never shown as a filter or a preference in the patient app */
export const STAFF_CATEGORIES = new Set(['work', 'clinical'])

/** Every figure of the signed-in person's inbox, shared by every page (the badges and the inbox). */
const state = reactive({
  account: null,
  counts: { total: 0, unread: 0, loaded: false },
  filter: 'all', // 'all' | 'unread' | a category
  items: [],
  next: null,
  loaded: false,
  loading: false,
  loadingMore: false,
  error: '',
  moreError: '',
  categories: [], // [{category, label}] from GET /api/v1/me/notice-preferences
  navs: {}, // notice id -> indoor-navigation URL (NAV-2)
})

let attached = null
let unsubscribe = null
let countsTimer = null
let loadSerial = 0
/** live notices that arrived while the first page was on its way (the answer may predate them) */
let arrivedDuringLoad = []
let categoriesLoaded = false

/** Reset when another account signs in (or the person signs out). */
function forAccount() {
  const account = live.account?.id ?? null
  if (account === state.account) return
  state.account = account
  state.counts = { total: 0, unread: 0, loaded: false }
  state.items = []
  state.next = null
  state.loaded = false
  state.error = ''
  state.navs = {}
  loadSerial += 1
}

function setCounts(answer) {
  if (answer && typeof answer.unread === 'number') {
    state.counts = { total: answer.total ?? state.counts.total, unread: answer.unread, loaded: true }
  }
}

/** The server's counts (the badges). */
export async function refreshCounts() {
  forAccount()
  if (!state.account) return
  const account = state.account
  try {
    const answer = await api('GET', '/api/v1/me/notices/counts')
    if (account === state.account) setCounts(answer)
  } catch {
    // the badge keeps its last figure; the next notice or reconnect asks again
  }
}

function countsSoon() {
  clearTimeout(countsTimer)
  countsTimer = setTimeout(refreshCounts, 250)
}

function matchesFilter(item) {
  if (state.filter === 'all') return true
  if (state.filter === 'unread') return !item.read
  return item.category === state.filter
}

export function categoryLabel(category) {
  return state.categories.find((c) => c.category === category)?.label ?? ''
}

/** A live "notice" delivery as an inbox row (the shape GET /api/v1/me/notices answers). */
function fromDelivery(message) {
  const b = message.body ?? {}
  return {
    id: String(b.notice_id),
    kind: b.kind ?? '',
    label: '',
    category: b.category ?? '',
    category_label: categoryLabel(b.category),
    title: b.title ?? '通知',
    body: b.body ?? '',
    link: b.link ?? null,
    critical: Boolean(b.critical),
    created_at: b.at ?? message.at,
    read: false,
    status: '',
    channel: null,
  }
}

function onDeliver(message) {
  if (message?.type !== 'notice' || !message.body?.notice_id) return
  forAccount()
  const item = fromDelivery(message)
  if (message.body.nav) state.navs = { ...state.navs, [item.id]: String(message.body.nav) }
  if (state.items.some((i) => i.id === item.id) || arrivedDuringLoad.some((i) => i.id === item.id)) return
  // the badge grows at once; the server's figure follows (a resumed delivery may be an old one)
  state.counts = { ...state.counts, total: state.counts.total + 1, unread: state.counts.unread + 1 }
  countsSoon()
  if (state.loading) arrivedDuringLoad.push(item)
  if (matchesFilter(item)) state.items.unshift(item)
}

function attach() {
  const client = liveClient()
  if (client === attached) return
  unsubscribe?.()
  attached = client
  unsubscribe = client ? client.on('deliver', onDeliver) : null
}

// the live client is made anew at sign-in: follow it; whenever it is (back) open, and whenever the
// page is shown again, the counts are asked again (notices read on another phone, missed ones)
watch(() => [live.account?.id, live.connection], ([, connection], old) => {
  forAccount()
  attach()
  if (connection === State.OPEN && old?.[1] !== State.OPEN) refreshCounts()
})
globalThis.document?.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && state.counts.loaded) refreshCounts()
})

function query(before) {
  const params = new URLSearchParams({ limit: String(PAGE) })
  if (state.filter === 'unread') params.set('unread', '1')
  else if (state.filter !== 'all') params.set('category', state.filter)
  if (before) params.set('before', before)
  return `/api/v1/me/notices?${params}`
}

/** The first page of the current filter (again). */
export async function reload() {
  forAccount()
  if (!state.account) return
  const serial = ++loadSerial
  state.loading = true
  state.error = ''
  arrivedDuringLoad = []
  try {
    const answer = await api('GET', query(null))
    if (serial !== loadSerial) return
    const fresh = arrivedDuringLoad.filter((i) => matchesFilter(i) && !answer.items.some((a) => a.id === i.id))
    keepNavs(answer.items)
    state.items = [...fresh, ...answer.items]
    state.next = answer.next
    setCounts(answer)
    state.loaded = true
  } catch (err) {
    if (serial === loadSerial) state.error = err.message
  } finally {
    if (serial === loadSerial) {
      state.loading = false
      arrivedDuringLoad = []
    }
  }
}

/** The next (older) page, after the last one shown. */
export async function loadMore() {
  if (!state.next || state.loadingMore) return
  const serial = loadSerial
  state.loadingMore = true
  state.moreError = ''
  try {
    const answer = await api('GET', query(state.next))
    if (serial !== loadSerial) return
    const known = new Set(state.items.map((i) => i.id))
    keepNavs(answer.items)
    state.items.push(...answer.items.filter((i) => !known.has(i.id)))
    state.next = answer.next
    setCounts(answer)
  } catch (err) {
    state.moreError = err.message
  } finally {
    state.loadingMore = false
  }
}

export function setFilter(filter) {
  if (filter === state.filter && state.loaded) return
  state.filter = filter
  state.items = []
  state.next = null
  reload()
}

/** The categories the person may see (for the filter tabs), once per visit. */
async function loadCategories() {
  if (categoriesLoaded) return
  categoriesLoaded = true
  try {
    const prefs = await api('GET', '/api/v1/me/notice-preferences')
    state.categories = prefs.categories
    for (const item of state.items) item.category_label ||= categoryLabel(item.category)
  } catch {
    categoriesLoaded = false // the tabs show 全部 and 未读 only; the next visit asks again
  }
}

/** NAV-2: the navigation links of the notices on the page (their rows carry them). */
function keepNavs(items) {
  const navs = { ...state.navs }
  for (const item of items) if (item.nav) navs[item.id] = String(item.nav)
  state.navs = navs
}

export async function markRead(item) {
  if (item.read) return
  item.read = true
  state.counts = { ...state.counts, unread: Math.max(0, state.counts.unread - 1) }
  try {
    setCounts(await api('POST', '/api/v1/me/notices/read', { ids: [item.id] }))
  } catch (err) {
    item.read = false
    refreshCounts()
    throw err
  }
}

export async function markAllRead() {
  setCounts(await api('POST', '/api/v1/me/notices/read', { all: true }))
  for (const item of state.items) item.read = true
}

/** The unread count for a badge (我的, the home page): asked of the server when a page shows it. */
export function useUnread() {
  forAccount()
  attach()
  refreshCounts()
  return computed(() => state.counts.unread)
}

/**
 * The inbox page: the list of ``filter`` ('all', 'unread' or a category: the page keeps it in its
 * address, ?tab=), the counts, and what a person does with them.
 */
export function useInbox(filter = 'all') {
  forAccount()
  attach()
  if (filter !== state.filter) {
    state.filter = filter
    state.items = []
    state.next = null
  }
  reload()
  loadCategories()
  const categories = computed(() => state.categories.filter((c) => !STAFF_CATEGORIES.has(c.category)))
  return { state, categories, reload, loadMore, setFilter, markRead, markAllRead }
}

/**
 * Where a notice's deep link goes in this app: the path under the router's base (`/h5/`), or null
 * for a link outside the patient app. The page checks that the router knows it.
 */
export function appPath(link) {
  if (typeof link !== 'string') return null
  if (link === '/h5' || link === '/h5/') return '/'
  return link.startsWith('/h5/') ? link.slice(3) : null
}
