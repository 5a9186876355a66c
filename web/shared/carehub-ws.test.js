// node --test: carehub-ws.js against a fake WebSocket and a fake clock (no network, no browser).
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { CareHubClient, CareHubError, State, backoffDelay, PROTOCOL } from './carehub-ws.js'

/** A manual clock: timers fire only when the test advances time. */
class FakeClock {
  constructor() {
    this.now = 0
    this.timers = new Map()
    this.nextId = 1
  }

  setTimeout(fn, ms) {
    const id = this.nextId++
    this.timers.set(id, { at: this.now + ms, fn })
    return id
  }

  clearTimeout(id) {
    this.timers.delete(id)
  }

  advance(ms) {
    const end = this.now + ms
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0]
      if (!due) break
      this.timers.delete(due[0])
      this.now = due[1].at
      due[1].fn()
    }
    this.now = end
  }

  /** The delays of the timers now pending, relative to now. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.now)
  }
}

/** A fake WebSocket class recording every socket it made and the frames sent on it. */
function fakeSockets() {
  const sockets = []
  class FakeWebSocket {
    constructor(url, protocol) {
      this.url = url
      this.protocol = protocol
      this.sent = []
      this.closed = null
      sockets.push(this)
    }

    send(text) {
      this.sent.push(JSON.parse(text))
    }

    close(code, reason) {
      this.closed = { code, reason }
    }

    // what the server does
    accept() {
      this.onopen?.()
    }

    frame(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) })
    }

    drop(code, reason = '') {
      this.onclose?.({ code, reason })
    }

    ops(op) {
      return this.sent.filter((f) => f.op === op)
    }
  }
  return { FakeWebSocket, sockets }
}

const WELCOME = {
  op: 'welcome',
  protocol: 1,
  account: { id: 'a1', name: '张三', roles: ['patient'] },
  stream: { first_seq: 1, last_seq: 0, resume_after: 0 },
  heartbeat_ms: 25000,
  idle_timeout_ms: 75000,
  reconnect: { min_ms: 500, max_ms: 15000 },
}

/** Let the client's async open (token lookup) run. */
const tick = () => new Promise((resolve) => setImmediate(resolve))

async function connected(options = {}) {
  const clock = new FakeClock()
  const { FakeWebSocket, sockets } = fakeSockets()
  const client = new CareHubClient({
    url: 'ws://hub.test/ws',
    token: 'tok-1',
    device: 'phone-1',
    WebSocket: FakeWebSocket,
    timers: clock,
    network: null,
    random: () => 0.5,
    ...options,
  })
  const states = []
  client.on('state', ({ state }) => states.push(state))
  client.connect()
  await tick()
  const ws = sockets.at(-1)
  ws.accept()
  ws.frame({ ...WELCOME, ...(options.welcome ?? {}) })
  return { client, clock, sockets, ws, states }
}

async function reconnectAfter(clock, sockets, ms) {
  const before = sockets.length
  clock.advance(ms)
  await tick()
  assert.equal(sockets.length, before + 1, 'a new socket was opened')
  return sockets.at(-1)
}

test('authenticates with the token, device and the subprotocol, and is open after welcome', async () => {
  const { client, ws, states } = await connected()
  assert.equal(ws.protocol, PROTOCOL)
  assert.deepEqual(ws.ops('auth'), [{ op: 'auth', token: 'tok-1', device: 'phone-1' }])
  assert.equal(client.state, State.OPEN)
  assert.deepEqual(states, [State.CONNECTING, State.OPEN])
})

test('a token function is asked again on every connection', async () => {
  let n = 0
  const { clock, sockets, ws } = await connected({ token: async () => `tok-${++n}` })
  ws.drop(1006)
  const second = await reconnectAfter(clock, sockets, 15000)
  second.accept()
  assert.equal(second.ops('auth')[0].token, 'tok-2')
})

test('after a reconnect it resumes after the last seq it processed', async () => {
  const { client, clock, sockets, ws } = await connected({ lastSeq: 41 })
  assert.equal(ws.ops('auth')[0].resume_after, 41)
  const seen = []
  client.on('deliver', (m) => seen.push(m.seq))
  ws.frame({ op: 'deliver', seq: 42, id: 'm42', type: 'chat.message', body: {} })
  ws.frame({ op: 'deliver', seq: 43, id: 'm43', type: 'chat.message', body: {} })
  ws.drop(1012, 'restart')
  assert.equal(client.state, State.RECONNECTING)
  const second = await reconnectAfter(clock, sockets, 15000)
  second.accept()
  assert.equal(second.ops('auth')[0].resume_after, 43)
  assert.deepEqual(seen, [42, 43])
})

test('a new device takes the server resume point as its baseline', async () => {
  const { client, ws } = await connected({ welcome: { stream: { first_seq: 1, last_seq: 9, resume_after: 9 } } })
  assert.equal(ws.ops('auth')[0].resume_after, undefined)
  assert.equal(client.lastSeq, 9)
})

test('repeats (same or older seq) are dropped, each message is delivered once', async () => {
  const { client, ws } = await connected({ lastSeq: 5 })
  const seen = []
  client.on('deliver', (m) => seen.push(m.id))
  for (const seq of [4, 5, 6, 6, 7, 5, 8]) ws.frame({ op: 'deliver', seq, id: `m${seq}`, type: 't', body: {} })
  assert.deepEqual(seen, ['m6', 'm7', 'm8'])
  assert.equal(client.lastSeq, 8)
})

test('acks are batched: one ack with the highest seq per interval', async () => {
  const { clock, ws } = await connected({ lastSeq: 0, ackDelayMs: 200 })
  for (let seq = 1; seq <= 5; seq++) ws.frame({ op: 'deliver', seq, id: `m${seq}`, type: 't', body: {} })
  assert.deepEqual(ws.ops('ack'), [])
  clock.advance(200)
  assert.deepEqual(ws.ops('ack'), [{ op: 'ack', seq: 5 }])
  clock.advance(1000)
  assert.equal(ws.ops('ack').length, 1, 'nothing new, no new ack')
})

test('backoff delays stay between min_ms and max_ms and their ceiling grows', () => {
  const bounds = { min_ms: 500, max_ms: 15000 }
  for (let attempt = 0; attempt < 12; attempt++) {
    for (const r of [0, 0.25, 0.5, 0.999999]) {
      const d = backoffDelay(attempt, bounds, () => r)
      assert.ok(d >= 500 && d <= 15000, `attempt ${attempt}: ${d}`)
    }
  }
  assert.equal(backoffDelay(0, bounds, () => 0.999999), 500)
  assert.equal(backoffDelay(3, bounds, () => 0.999999), 4000)
  assert.equal(backoffDelay(20, bounds, () => 0.999999), 15000)
  assert.equal(backoffDelay(20, bounds, () => 0), 500, 'full jitter: may come back as early as min_ms')
})

test('reconnect waits follow the welcome reconnect bounds with jitter', async () => {
  let r = 0.999999
  const { clock, sockets, ws } = await connected({
    random: () => r,
    welcome: { reconnect: { min_ms: 100, max_ms: 1000 } },
  })
  ws.drop(1006)
  assert.deepEqual(clock.pending(), [100])
  let socket = await reconnectAfter(clock, sockets, 100)
  for (const expected of [200, 400, 800, 1000, 1000]) {
    socket.drop(1006)
    assert.deepEqual(clock.pending(), [expected])
    socket = await reconnectAfter(clock, sockets, expected)
  }
  socket.accept()
  socket.frame({ ...WELCOME, reconnect: { min_ms: 100, max_ms: 1000 } })
  r = 0
  socket.drop(1011)
  assert.deepEqual(clock.pending(), [100], 'a welcome resets the back-off')
})

test("bye's reconnect_after_ms is obeyed for the next attempt", async () => {
  const { clock, sockets, ws } = await connected()
  ws.frame({ op: 'bye', code: 'restart', reason: '服务重启', reconnect_after_ms: 7321 })
  ws.drop(1012, 'restart')
  assert.deepEqual(clock.pending(), [7321])
  clock.advance(7320)
  await tick()
  assert.equal(sockets.length, 1, 'not before the server asked')
  await reconnectAfter(clock, sockets, 1)
})

test('4008 and 1011 reconnect and resume', async () => {
  for (const code of [4008, 1011, 1006]) {
    const { client, clock, sockets, ws } = await connected({ lastSeq: 3 })
    ws.drop(code)
    assert.equal(client.state, State.RECONNECTING)
    const next = await reconnectAfter(clock, sockets, 15000)
    next.accept()
    assert.equal(next.ops('auth')[0].resume_after, 3, `after ${code}`)
  }
})

test('4001 and 4003 ask the app to sign in again and do not reconnect', async () => {
  for (const code of [4001, 4003]) {
    const { client, clock, sockets, ws } = await connected()
    const asked = []
    client.on('auth_required', (detail) => asked.push(detail.code))
    const pending = client.call('patient/p1', 'Ping', {})
    ws.drop(code, 'signed out')
    assert.deepEqual(asked, [code])
    assert.equal(client.state, State.CLOSED)
    await assert.rejects(pending, (err) => err instanceof CareHubError && err.retryable)
    clock.advance(60_000)
    await tick()
    assert.equal(sockets.length, 1, 'no reconnect loop')
    assert.deepEqual(clock.pending(), [])
  }
})

test('at most 16 calls are in flight; the rest wait and go out as replies come back', async () => {
  const { client, ws } = await connected()
  const results = Array.from({ length: 20 }, (_, i) => client.call(`patient/p${i}`, 'Ping', { i }))
  assert.equal(ws.ops('call').length, 16)
  assert.equal(client.inFlight, 16)
  assert.equal(client.waiting, 4)
  const first = ws.ops('call')[0]
  ws.frame({ op: 'reply', id: first.id, ok: true, result: { pong: 0 } })
  assert.deepEqual(await results[0], { pong: 0 })
  assert.equal(ws.ops('call').length, 17)
  assert.equal(ws.ops('call')[16].body.i, 16, 'in order')
  assert.equal(client.inFlight, 16)
})

test('calls and commands share the limit; a command resolves with status and result', async () => {
  const { client, ws } = await connected({ maxInFlight: 2 })
  const a = client.command('patients.list')
  const b = client.call('patient/p1', 'Ping')
  const c = client.command('booking.create', { day: '2026-12-01' })
  assert.deepEqual(ws.sent.filter((f) => f.id).map((f) => f.op), ['command', 'call'])
  const [cmd] = ws.ops('command')
  assert.equal(cmd.body, undefined)
  ws.frame({ op: 'reply', id: cmd.id, ok: true, status: 200, result: { patients: [] } })
  assert.deepEqual(await a, { status: 200, result: { patients: [] } })
  const second = ws.ops('command')[1]
  ws.frame({
    op: 'reply', id: second.id, ok: false,
    error: { code: 'duplicate_booking', status: 409, retryable: false, message: '该就诊人当天已预约过该医生' },
  })
  await assert.rejects(c, (err) => err.code === 'duplicate_booking' && err.status === 409 && /已预约/.test(err.message))
  ws.frame({ op: 'reply', id: ws.ops('call')[0].id, ok: true, result: 1 })
  assert.equal(await b, 1)
})

test('calls made while reconnecting wait and are sent after the welcome', async () => {
  const { client, clock, sockets, ws } = await connected()
  ws.drop(1006)
  const pending = client.call('patient/p1', 'Ping')
  const next = await reconnectAfter(clock, sockets, 15000)
  next.accept()
  assert.equal(next.ops('call').length, 0, 'not before welcome')
  next.frame(WELCOME)
  assert.equal(next.ops('call').length, 1)
  next.frame({ op: 'reply', id: next.ops('call')[0].id, ok: true, result: 'ok' })
  assert.equal(await pending, 'ok')
})

test('a call in flight when the connection drops is rejected as retryable', async () => {
  const { client, ws } = await connected()
  const pending = client.call('patient/p1', 'Ping')
  ws.drop(1006)
  await assert.rejects(pending, (err) => err.code === 'disconnected' && err.retryable === true)
})

test('topics are re-subscribed after a reconnect', async () => {
  const { client, clock, sockets, ws } = await connected()
  client.subscribe('broadcast/hall-3')
  client.subscribe('broadcast/cardio')
  client.subscribe('broadcast/cardio')
  assert.deepEqual(ws.ops('subscribe').map((f) => f.topic), ['broadcast/hall-3', 'broadcast/cardio'])
  const events = []
  client.on('event', (e) => events.push(e.body.number))
  ws.frame({ op: 'event', topic: 'broadcast/hall-3', type: 'call', body: { number: 'A017' } })
  client.unsubscribe('broadcast/cardio')
  ws.drop(1012)
  const next = await reconnectAfter(clock, sockets, 15000)
  next.accept()
  next.frame(WELCOME)
  assert.deepEqual(next.ops('subscribe').map((f) => f.topic), ['broadcast/hall-3'])
  assert.deepEqual(events, ['A017'])
})

test('pings are answered with the same t', async () => {
  const { ws } = await connected()
  ws.frame({ op: 'ping', t: '2026-11-25T08:02:28+00:00' })
  assert.deepEqual(ws.ops('pong'), [{ op: 'pong', t: '2026-11-25T08:02:28+00:00' }])
})

test('a silent connection (no heartbeat) is given up and reconnected', async () => {
  const { client, clock, sockets, ws } = await connected()
  clock.advance(25000 * 2 + 5000)
  assert.equal(client.state, State.RECONNECTING)
  assert.ok(ws.closed, 'the dead socket was closed')
  await reconnectAfter(clock, sockets, 15000)
})

test('offline and online events drive the offline state and an immediate retry', async () => {
  const network = new EventTarget()
  const { client, sockets, states } = await connected({ network })
  network.dispatchEvent(new Event('offline'))
  assert.equal(client.state, State.OFFLINE)
  network.dispatchEvent(new Event('online'))
  await tick()
  assert.equal(sockets.length, 2)
  assert.deepEqual(states, [State.CONNECTING, State.OPEN, State.OFFLINE, State.RECONNECTING])
})

test('close() stops for good and rejects what waits', async () => {
  const { client, clock, sockets, ws } = await connected({ maxInFlight: 1 })
  const a = client.call('patient/p1', 'Ping')
  const b = client.call('patient/p1', 'Ping')
  client.close()
  await assert.rejects(a)
  await assert.rejects(b)
  assert.equal(client.state, State.CLOSED)
  assert.equal(ws.closed.code, 1000)
  clock.advance(60_000)
  await tick()
  assert.equal(sockets.length, 1)
  await assert.rejects(client.call('patient/p1', 'Ping'), (err) => err.code === 'closed')
})

test('an online event during an attempt does not open a second socket', async () => {
  const network = new EventTarget()
  const { clock, sockets, ws } = await connected({ network, token: async () => 'tok-1' })
  ws.drop(1006)
  clock.advance(15000) // the retry starts: it is waiting for its token
  network.dispatchEvent(new Event('online'))
  await tick()
  await tick()
  assert.equal(sockets.length, 2)
})
