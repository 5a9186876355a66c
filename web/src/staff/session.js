// The session, API and live connection of a staff page (doctor workstation, admin console).
// sessionStorage, not localStorage: a shared PC forgets the session when the browser closes.
import { reactive } from 'vue'
import { createApi } from '@shared/api.js'
import { CareHubClient, State } from '@shared/carehub-ws.js'
import { SessionStore, deviceId, seqStore } from '@shared/session.js'

/**
 * One staff app's session: `createStaffSession('doctor')` -> { session, live, api, signIn, signOut,
 * startLive, liveClient, onSignedOut }. `live.account` is who is signed in, `live.connection` the
 * /ws state (for the banner).
 */
export function createStaffSession(app) {
  const session = new SessionStore(`carehub.${app}.session`, sessionStorage)
  const live = reactive({ account: session.get()?.account ?? null, connection: State.IDLE, signedOutReason: '' })
  const listeners = new Set()
  let hub = null

  function stopLive() {
    if (hub) hub.close()
    hub = null
    live.connection = State.IDLE
  }

  function signedOut(reason) {
    stopLive()
    session.clear()
    live.account = null
    live.signedOutReason = reason
    for (const listener of listeners) listener(reason)
  }

  const api = createApi({ token: () => session.token, onUnauthorized: () => signedOut('登录已失效，请重新登录') })

  function startLive() {
    const current = session.get()
    if (!current || hub) return hub
    const seqs = seqStore(sessionStorage, current.account.id)
    hub = new CareHubClient({ token: () => session.token, device: deviceId(localStorage, app), lastSeq: seqs.load() })
    hub.on('state', ({ state }) => {
      live.connection = state
    })
    hub.on('deliver', () => seqs.save(hub.lastSeq))
    hub.on('auth_required', () => signedOut('登录已失效，请重新登录'))
    hub.connect()
    return hub
  }

  return {
    session,
    live,
    api,
    startLive,
    stopLive,
    liveClient: () => hub,
    onSignedOut(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    /** Keep the answer of POST /api/v1/auth/login and open the live connection. */
    signIn(result) {
      session.set({ token: result.token, account: result.account })
      live.account = result.account
      live.signedOutReason = ''
      startLive()
    },
    async signOut() {
      try {
        await api('POST', '/api/v1/auth/logout')
      } catch {
        // signed out here anyway
      }
      stopLive()
      session.clear()
      live.account = null
    },
  }
}
