// node --test: api.js turns failures into the message a person should read.
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { ApiError, createApi, readableMessage } from './api.js'

function fakeFetch(status, body, headers = {}) {
  const calls = []
  const fetch = async (path, init) => {
    calls.push({ path, init })
    return {
      ok: status >= 200 && status < 300,
      status,
      headers: { get: (name) => headers[name] ?? null },
      text: async () => (typeof body === 'string' ? body : JSON.stringify(body)),
    }
  }
  return { fetch, calls }
}

test('the Chinese part of a server message is what the page shows', () => {
  assert.equal(readableMessage('验证码为 6 位数字 (the code has 6 digits)'), '验证码为 6 位数字')
  assert.equal(readableMessage('验证码错误或已过期'), '验证码错误或已过期')
  assert.equal(readableMessage('schema version 3, expected 4'), 'schema version 3, expected 4')
})

test('a failed call carries the status, code and the server message', async () => {
  const { fetch } = fakeFetch(401, { error: { code: 'auth_failed', message: '验证码错误或已过期' } })
  const api = createApi({ token: () => null, fetch })
  await assert.rejects(api('POST', '/api/v1/auth/sms-login', { phone: '1', code: '2' }), (err) => {
    assert.ok(err instanceof ApiError)
    assert.equal(err.status, 401)
    assert.equal(err.code, 'auth_failed')
    assert.equal(err.message, '验证码错误或已过期')
    return true
  })
})

test('a failure without a JSON body still gets a Chinese message', async () => {
  const { fetch } = fakeFetch(502, '<html>Bad Gateway</html>')
  const api = createApi({ token: () => null, fetch })
  await assert.rejects(api('GET', '/api/v1/hospital'), (err) => err.status === 502 && /服务暂时不可用/.test(err.message))
})

test('a network failure says so in Chinese', async () => {
  const api = createApi({ token: () => null, fetch: async () => { throw new TypeError('Failed to fetch') } })
  await assert.rejects(api('GET', '/api/v1/hospital'), (err) => err.code === 'network' && /网络/.test(err.message))
})

test('the token goes in the Authorization header, never in the URL; a 401 signs out', async () => {
  const { fetch, calls } = fakeFetch(401, { error: { code: 'unauthenticated', message: '请先登录' } })
  let signedOut = 0
  const api = createApi({ token: () => 'tok-secret', fetch, onUnauthorized: () => signedOut++ })
  await assert.rejects(api('GET', '/api/v1/me'))
  assert.equal(calls[0].path, '/api/v1/me')
  assert.equal(calls[0].init.headers.Authorization, 'Bearer tok-secret')
  assert.equal(signedOut, 1)
})

test('Retry-After is kept for the page (an SMS code asked for too soon)', async () => {
  const { fetch } = fakeFetch(429, { error: { code: 'rate_limited', message: '请 60 秒后再试' } }, { 'Retry-After': '42' })
  const api = createApi({ token: () => null, fetch })
  await assert.rejects(api('POST', '/api/v1/auth/sms-code', {}), (err) => err.retryAfter === 42)
})
