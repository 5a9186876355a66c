// Where a page keeps who is signed in: the token lives in Web Storage, never in a URL.
// The patient app uses localStorage (a phone stays signed in until the token expires); the staff
// pages use sessionStorage (a shared PC forgets the session when the browser closes).

/** A stored session: `{ token, account: { id, name, roles } }` or null. */
export class SessionStore {
  constructor(key, storage) {
    this.key = key
    this.storage = storage
  }

  get() {
    try {
      const raw = this.storage.getItem(this.key)
      const session = raw ? JSON.parse(raw) : null
      return session && typeof session.token === 'string' ? session : null
    } catch {
      return null
    }
  }

  set(session) {
    this.storage.setItem(this.key, JSON.stringify(session))
  }

  clear() {
    this.storage.removeItem(this.key)
  }

  get token() {
    return this.get()?.token ?? null
  }
}

/** A stable, random name of this browser for the server's per-device acks. */
export function deviceId(storage, prefix = 'web') {
  const key = 'carehub.device'
  let id = storage.getItem(key)
  if (!id) {
    const bytes = new Uint8Array(6)
    globalThis.crypto.getRandomValues(bytes)
    id = `${prefix}-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`
    storage.setItem(key, id)
  }
  return id
}

/** The last delivery-stream seq this browser processed for an account (the resume point). */
export function seqStore(storage, accountId) {
  const key = `carehub.seq.${accountId}`
  return {
    load() {
      const n = Number.parseInt(storage.getItem(key) ?? '', 10)
      return Number.isFinite(n) && n >= 0 ? n : null
    },
    save(seq) {
      storage.setItem(key, String(seq))
    },
  }
}
