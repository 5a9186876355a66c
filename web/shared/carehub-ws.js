// carehub-ws.js: the browser's client of CareHub's /ws protocol v1 (docs/protocol.md).
//
// Framework-free: it knows nothing of Vue. Modelled on centrifuge-js: the client is a state
// machine of its own connection, resumes the person's delivery stream by offset (`seq`),
// reconnects with full-jitter back-off and restores its topic subscriptions afterwards.
//
//   const hub = new CareHubClient({ token: () => session.token, device: 'phone-7f3a' })
//   hub.on('state', ({ state }) => banner.show(state))      // connecting | open | reconnecting | offline | closed
//   hub.on('deliver', (message) => inbox.add(message))      // each stream message once, in order
//   hub.on('auth_required', () => router.push('/login'))   // 4001/4003: sign in again, no reconnect loop
//   hub.connect()
//   const { result } = await hub.command('patients.list')
//
// Invariants:
// - `lastSeq` only grows; a `deliver` whose seq is not above it is a repeat and is dropped.
// - at most `maxInFlight` (16, the server's limit) calls and commands are on the wire; the rest
//   wait here, in order, and are sent as replies come back (also after a reconnect).
// - a call sent on a connection that is lost before its reply is rejected with a retryable
//   `disconnected` error: the server may or may not have done it (commands take a client_ref for that).
// - after `auth_required` or `close()` the client stays closed until `connect()` is called again.

export const PROTOCOL = 'carehub.v1.json'

/** Connection states, as the pages' banner shows them. */
export const State = Object.freeze({
  IDLE: 'idle', // not started
  CONNECTING: 'connecting', // first connection attempt
  OPEN: 'open', // welcomed: calls, stream and topics flow
  RECONNECTING: 'reconnecting', // lost: waiting for the back-off, or trying again
  OFFLINE: 'offline', // the device says it has no network: waits for it to come back
  CLOSED: 'closed', // close() or auth_required: no more attempts
})

/** Close codes after which reconnecting cannot help: the person must sign in again. */
export const AUTH_CLOSE_CODES = Object.freeze([4001, 4003])

const DEFAULT_RECONNECT = Object.freeze({ min_ms: 500, max_ms: 15000 })

/** A failed call or command: the server's error (code, Chinese message, retryable, HTTP status). */
export class CareHubError extends Error {
  constructor({ code, message, retryable = false, status }) {
    super(message || code)
    this.name = 'CareHubError'
    this.code = code
    this.retryable = Boolean(retryable)
    if (status !== undefined) this.status = status
  }
}

/**
 * The back-off before reconnect attempt `attempt` (0, 1, 2 ...): "full jitter" (uniformly random)
 * between `min_ms` and an exponentially growing ceiling capped at `max_ms`.
 */
export function backoffDelay(attempt, { min_ms, max_ms }, random = Math.random) {
  const ceiling = Math.min(max_ms, min_ms * 2 ** Math.min(attempt, 30))
  return Math.round(min_ms + random() * (ceiling - min_ms))
}

function defaultUrl() {
  const loc = globalThis.location
  if (!loc) throw new Error('CareHubClient: no url given and no window.location to derive it from')
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`
}

export class CareHubClient {
  /**
   * @param {object} options
   * @param {string} [options.url] the /ws URL (default: this page's host)
   * @param {string|(() => string|Promise<string>)} options.token bearer token, or a function giving the current one
   * @param {string} [options.device] a stable name of this device (the server keeps acks per device)
   * @param {number|null} [options.lastSeq] the last stream seq this device processed (resume point)
   * @param {number} [options.maxInFlight] calls + commands on the wire at once (server limit: 16)
   * @param {number} [options.ackDelayMs] acks are batched: at most one per this interval
   * @param {number} [options.callTimeoutMs] a reply not here by then rejects the call (`timeout`)
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket class (tests pass a fake one)
   * @param {() => number} [options.random] random source for the jitter (tests pass their own)
   * @param {object} [options.timers] { setTimeout, clearTimeout } (tests pass their own clock)
   * @param {EventTarget|null} [options.network] where 'online'/'offline' events come from (default: window)
   */
  constructor(options = {}) {
    this.url = options.url ?? defaultUrl()
    this._token = options.token
    this.device = options.device ?? 'default'
    this.lastSeq = options.lastSeq ?? null
    this.maxInFlight = options.maxInFlight ?? 16
    this.ackDelayMs = options.ackDelayMs ?? 200
    this.callTimeoutMs = options.callTimeoutMs ?? 40000
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket
    this._random = options.random ?? Math.random
    this._timers = options.timers ?? { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) }
    this._network = options.network !== undefined ? options.network : (typeof window !== 'undefined' ? window : null)

    this.state = State.IDLE
    this.welcome = null
    this.reconnect = { ...DEFAULT_RECONNECT }
    this._listeners = new Map()
    this._ws = null
    this._attempt = 0 // reconnect attempts since the last welcome
    this._retryTimer = null
    this._opening = false // waiting for the token of an attempt
    this._byeDelay = null // the server's reconnect_after_ms from its last bye
    this._ackTimer = null
    this._ackedSeq = null
    this._idleTimer = null
    this._nextId = 1
    this._queue = [] // calls not yet sent: { frame, resolve, reject, kind }
    this._inFlight = new Map() // id -> { frame, resolve, reject, kind, timer }
    this._topics = new Set()

    this._onOnline = () => this._networkBack()
    this._onOffline = () => this._networkLost()
  }

  // ---- events --------------------------------------------------------------------------------

  /** Listen to 'state', 'welcome', 'deliver', 'event', 'error', 'bye', 'auth_required'. Returns an unsubscribe. */
  on(name, listener) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set())
    this._listeners.get(name).add(listener)
    return () => this._listeners.get(name)?.delete(listener)
  }

  _emit(name, payload) {
    for (const listener of [...(this._listeners.get(name) ?? [])]) {
      try {
        listener(payload)
      } catch (err) {
        // a page's listener failing must not break the connection's state machine
        globalThis.console?.error?.(`carehub-ws: a '${name}' listener failed`, err)
      }
    }
  }

  _setState(state, detail = {}) {
    if (state === this.state) return
    const previous = this.state
    this.state = state
    this._emit('state', { state, previous, ...detail })
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  /** Start (or restart after close/auth_required) connecting. */
  connect() {
    if (this.state !== State.IDLE && this.state !== State.CLOSED) return
    this._attempt = 0
    this._network?.addEventListener?.('online', this._onOnline)
    this._network?.addEventListener?.('offline', this._onOffline)
    this._setState(State.CONNECTING)
    this._open()
  }

  /** Stop for good: no reconnect. Waiting and in-flight calls are rejected. */
  close() {
    this._shutDown({ code: 'closed', message: '连接已关闭 (the client was closed)' })
  }

  _shutDown(reason) {
    this._network?.removeEventListener?.('online', this._onOnline)
    this._network?.removeEventListener?.('offline', this._onOffline)
    this._clearTimer('_retryTimer')
    this._flushAck()
    this._clearTimer('_ackTimer')
    this._clearTimer('_idleTimer')
    const ws = this._ws
    this._ws = null
    if (ws) {
      this._detach(ws)
      try {
        ws.close(1000, 'client closed')
      } catch {
        // already closing
      }
    }
    this._failInFlight()
    for (const waiting of this._queue.splice(0)) waiting.reject(new CareHubError(reason))
    this._setState(State.CLOSED, { reason })
  }

  async _open() {
    if (this._ws || this._opening) return // one connection attempt at a time
    this._opening = true
    let token
    try {
      token = typeof this._token === 'function' ? await this._token() : this._token
    } catch {
      token = null
    } finally {
      this._opening = false
    }
    if (this.state === State.CLOSED || this.state === State.OFFLINE || this._ws) return
    if (!token) {
      this._authRequired({ code: 4001, reason: 'no token: sign in first' })
      return
    }
    let ws
    try {
      ws = new this._WebSocket(this.url, PROTOCOL)
    } catch (err) {
      this._lost({ code: 1006, reason: String(err) })
      return
    }
    this._ws = ws
    ws.onopen = () => {
      const frame = { op: 'auth', token, device: this.device }
      if (this.lastSeq !== null) frame.resume_after = this.lastSeq
      this._send(frame)
    }
    ws.onmessage = (event) => this._receive(event.data)
    ws.onerror = () => {} // the close event that follows says what happened
    ws.onclose = (event) => {
      if (this._ws !== ws) return
      this._ws = null
      this._detach(ws)
      this._closed(event.code, event.reason || '')
    }
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null
  }

  _closed(code, reason) {
    this._clearTimer('_idleTimer')
    this._clearTimer('_ackTimer')
    this.welcome = null
    if (AUTH_CLOSE_CODES.includes(code)) {
      this._authRequired({ code, reason })
      return
    }
    // 4008 slow consumer, 1011 internal error, 1012 restart, 1006 network, 4002 idle, anything else:
    // come back (after the server's bye delay if it gave one) and resume from lastSeq
    this._lost({ code, reason })
  }

  _authRequired(detail) {
    this._shutDown({ code: 'auth_required', message: '登录已失效，请重新登录 (sign in again)' })
    this._emit('auth_required', detail)
  }

  _lost(detail) {
    this._failInFlight()
    if (this._network && globalThis.navigator && globalThis.navigator.onLine === false) {
      this._setState(State.OFFLINE, detail)
      return
    }
    this._setState(State.RECONNECTING, detail)
    this._scheduleRetry()
  }

  _scheduleRetry() {
    this._clearTimer('_retryTimer')
    let delay
    if (this._byeDelay !== null) {
      delay = this._byeDelay
      this._byeDelay = null
    } else {
      delay = backoffDelay(this._attempt, this.reconnect, this._random)
    }
    this._attempt += 1
    this.nextRetryMs = delay
    this._retryTimer = this._timers.setTimeout(() => {
      this._retryTimer = null
      this._open()
    }, delay)
  }

  _networkLost() {
    if (this.state === State.CLOSED || this.state === State.IDLE) return
    this._clearTimer('_retryTimer')
    const ws = this._ws
    this._ws = null
    if (ws) {
      this._detach(ws)
      try {
        ws.close(1000, 'offline')
      } catch {
        // already closing
      }
    }
    this._clearTimer('_idleTimer')
    this._failInFlight()
    this._setState(State.OFFLINE)
  }

  _networkBack() {
    if (this.state !== State.OFFLINE && this.state !== State.RECONNECTING) return
    this._clearTimer('_retryTimer')
    if (this._ws) return
    this._setState(State.RECONNECTING)
    this._open()
  }

  // ---- frames --------------------------------------------------------------------------------

  _send(frame) {
    if (!this._ws) return false
    this._ws.send(JSON.stringify(frame))
    return true
  }

  _receive(data) {
    let frame
    try {
      frame = JSON.parse(data)
    } catch {
      return
    }
    this._touch()
    switch (frame.op) {
      case 'welcome':
        return this._welcomed(frame)
      case 'deliver':
        return this._deliver(frame)
      case 'reply':
        return this._reply(frame)
      case 'event':
        return this._emit('event', frame)
      case 'ping':
        this._send({ op: 'pong', t: frame.t })
        return
      case 'bye':
        if (typeof frame.reconnect_after_ms === 'number') this._byeDelay = Math.max(0, frame.reconnect_after_ms)
        this._emit('bye', frame)
        return
      case 'error':
        this._emit('error', frame)
        return
      default:
        // subscribed / unsubscribed / pong: nothing to do
        return
    }
  }

  /** A silent connection is a dead one: nothing for two heartbeats (and a margin) -> reconnect. */
  _touch() {
    if (!this.welcome) return
    this._clearTimer('_idleTimer')
    const quiet = (this.welcome.heartbeat_ms ?? 25000) * 2 + 5000
    this._idleTimer = this._timers.setTimeout(() => {
      this._idleTimer = null
      const ws = this._ws
      if (!ws) return
      this._ws = null
      this._detach(ws)
      try {
        ws.close(4000, 'no heartbeat')
      } catch {
        // already closing
      }
      this._closed(1006, 'no heartbeat from the server')
    }, quiet)
  }

  _welcomed(frame) {
    this.welcome = frame
    if (frame.reconnect && frame.reconnect.min_ms >= 0 && frame.reconnect.max_ms >= frame.reconnect.min_ms) {
      this.reconnect = { min_ms: frame.reconnect.min_ms, max_ms: frame.reconnect.max_ms }
    }
    if (this.lastSeq === null && frame.stream && typeof frame.stream.resume_after === 'number') {
      // a device new to the server: it starts where the server says; anything at or below is history
      this.lastSeq = frame.stream.resume_after
      this._ackedSeq = this.lastSeq
    }
    this._attempt = 0
    this._byeDelay = null
    this._touch()
    for (const topic of this._topics) this._send({ op: 'subscribe', topic })
    this._setState(State.OPEN)
    this._emit('welcome', frame)
    this._pump()
  }

  _deliver(frame) {
    if (typeof frame.seq !== 'number') return
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return // a repeat (resume from an older point)
    this.lastSeq = frame.seq
    this._emit('deliver', frame)
    if (this._ackTimer === null) {
      this._ackTimer = this._timers.setTimeout(() => {
        this._ackTimer = null
        this._flushAck()
      }, this.ackDelayMs)
    }
  }

  _flushAck() {
    if (this.lastSeq === null || this.lastSeq === this._ackedSeq || !this._ws || !this.welcome) return
    if (this._send({ op: 'ack', seq: this.lastSeq })) this._ackedSeq = this.lastSeq
  }

  // ---- calls and commands ----------------------------------------------------------------------

  /** Ask an actor: resolves with the reply's result once the actor's change is committed. */
  call(to, type, body = {}) {
    return this._enqueue({ op: 'call', to, type, body }, 'call')
  }

  /**
   * Run a REST route over this connection (docs/protocol.md "Commands"): resolves with
   * `{ status, result }`, rejects with a CareHubError carrying the route's status.
   */
  command(name, body) {
    const frame = { op: 'command', name }
    if (body !== undefined) frame.body = body
    return this._enqueue(frame, 'command')
  }

  /** Calls and commands waiting here for a free slot (beyond `maxInFlight`). */
  get waiting() {
    return this._queue.length
  }

  /** Calls and commands sent and not yet answered. */
  get inFlight() {
    return this._inFlight.size
  }

  _enqueue(frame, kind) {
    if (this.state === State.CLOSED) {
      return Promise.reject(new CareHubError({ code: 'closed', message: '连接已关闭 (the client was closed)' }))
    }
    return new Promise((resolve, reject) => {
      this._queue.push({ frame, kind, resolve, reject })
      this._pump()
    })
  }

  _pump() {
    while (this.state === State.OPEN && this._ws && this._inFlight.size < this.maxInFlight && this._queue.length) {
      const entry = this._queue.shift()
      const id = `c${this._nextId++}`
      entry.frame = { ...entry.frame, id }
      entry.timer = this._timers.setTimeout(() => {
        if (!this._inFlight.has(id)) return
        this._inFlight.delete(id)
        entry.reject(new CareHubError({ code: 'timeout', message: '服务器响应超时，请稍后重试 (no reply in time)', retryable: true }))
        this._pump()
      }, this.callTimeoutMs)
      this._inFlight.set(id, entry)
      this._send(entry.frame)
    }
  }

  _reply(frame) {
    const entry = this._inFlight.get(frame.id)
    if (!entry) return
    this._inFlight.delete(frame.id)
    this._timers.clearTimeout(entry.timer)
    if (frame.ok) {
      entry.resolve(entry.kind === 'command' ? { status: frame.status, result: frame.result } : frame.result)
    } else {
      entry.reject(new CareHubError(frame.error ?? { code: 'error', message: '请求失败' }))
    }
    this._pump()
  }

  _failInFlight() {
    for (const [id, entry] of this._inFlight) {
      this._timers.clearTimeout(entry.timer)
      entry.reject(new CareHubError({
        code: 'disconnected',
        message: '网络连接中断，请重试 (the connection was lost before the reply)',
        retryable: true,
      }))
      this._inFlight.delete(id)
    }
  }

  // ---- topics --------------------------------------------------------------------------------

  /** Join a topic now and after every reconnect; events arrive as 'event'. Returns an unsubscribe. */
  subscribe(topic) {
    if (!this._topics.has(topic)) {
      this._topics.add(topic)
      if (this.state === State.OPEN) this._send({ op: 'subscribe', topic })
    }
    return () => this.unsubscribe(topic)
  }

  unsubscribe(topic) {
    if (this._topics.delete(topic) && this.state === State.OPEN) this._send({ op: 'unsubscribe', topic })
  }

  get topics() {
    return [...this._topics]
  }

  _clearTimer(name) {
    if (this[name] !== null && this[name] !== undefined) {
      this._timers.clearTimeout(this[name])
      this[name] = null
    }
  }
}
