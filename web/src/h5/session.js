// The patient app's session, API and live connection, shared by its pages.
import { reactive } from 'vue'
import { createApi } from '@shared/api.js'
import { CareHubClient, State } from '@shared/carehub-ws.js'
import { SessionStore, deviceId, seqStore } from '@shared/session.js'

export const session = new SessionStore('carehub.h5.session', localStorage)

/** What the pages render from: who is signed in and how the connection is. */
export const live = reactive({
  account: session.get()?.account ?? null,
  connection: State.IDLE,
  signedOutReason: '',
})

let hub = null
const signedOutListeners = new Set()

/** Called when the server says the session is over (401 or a 4001/4003 close). */
export function onSignedOut(listener) {
  signedOutListeners.add(listener)
  return () => signedOutListeners.delete(listener)
}

function signedOut(reason) {
  stopLive()
  session.clear()
  live.account = null
  live.signedOutReason = reason
  for (const listener of signedOutListeners) listener(reason)
}

export const api = createApi({
  token: () => session.token,
  onUnauthorized: () => signedOut('登录已失效，请重新登录'),
})

/** Sign in: keep the session and open the live connection. */
export function signIn(result) {
  session.set({ token: result.token, account: result.account })
  live.account = result.account
  live.signedOutReason = ''
  startLive()
}

export async function signOut() {
  try {
    await api('POST', '/api/v1/auth/logout')
  } catch {
    // signed out here anyway
  }
  stopLive()
  session.clear()
  live.account = null
}

/** The /ws connection of the signed-in patient (the banner shows its state). */
export function startLive() {
  const current = session.get()
  if (!current || hub) return hub
  const seqs = seqStore(localStorage, current.account.id)
  hub = new CareHubClient({ token: () => session.token, device: deviceId(localStorage, 'h5'), lastSeq: seqs.load() })
  hub.on('state', ({ state }) => {
    live.connection = state
  })
  hub.on('deliver', () => seqs.save(hub.lastSeq))
  hub.on('auth_required', () => signedOut('登录已失效，请重新登录'))
  hub.connect()
  return hub
}

export function stopLive() {
  if (hub) {
    hub.close()
    hub = null
  }
  live.connection = State.IDLE
}

export const liveClient = () => hub
