// REST calls of the pages: JSON in and out, the bearer token from the page's session, and
// failures turned into an ApiError whose `message` is the server's Chinese text (what the page shows).
// Framework-free: the pages decide how to show an error (a toast, a dialog, a line in a form).

/** A failed request: HTTP status, the server's error code, a message fit to show the person. */
export class ApiError extends Error {
  constructor(status, code, message, { retryAfter = null } = {}) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.retryAfter = retryAfter
  }
}

const HAN = /[\u3400-\u9fff]/

/**
 * The part of a server message a patient should read: CareHub writes "中文说明 (English detail)";
 * the English detail in brackets is for the operators and is dropped when Chinese text precedes it.
 */
export function readableMessage(message) {
  const text = String(message ?? '').trim()
  const match = /^(.*?[\u3400-\u9fff].*?)\s*[(（][^()（）]*[)）]\s*$/u.exec(text)
  if (match && HAN.test(match[1])) return match[1].trim()
  return text
}

function fallbackMessage(status) {
  if (status === 401) return '登录已失效，请重新登录'
  if (status === 403) return '没有权限进行此操作'
  if (status === 404) return '请求的内容不存在'
  if (status === 429) return '操作太频繁，请稍后再试'
  if (status >= 500) return `服务暂时不可用（${status}），请稍后重试`
  return `请求失败（${status}）`
}

/**
 * Make an `api(method, path, body?)` function.
 * @param {object} options
 * @param {() => string|null} options.token the current bearer token (or null)
 * @param {(err: ApiError) => void} [options.onUnauthorized] called on a 401 of a signed-in request
 * @param {typeof fetch} [options.fetch]
 */
export function createApi({ token, onUnauthorized = () => {}, fetch: fetchImpl = globalThis.fetch.bind(globalThis) }) {
  return async function api(method, path, body) {
    const headers = { Accept: 'application/json' }
    const bearer = token()
    if (bearer) headers.Authorization = `Bearer ${bearer}`
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' }
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json'
      init.body = JSON.stringify(body)
    }
    let response
    try {
      response = await fetchImpl(path, init)
    } catch {
      throw new ApiError(0, 'network', '网络连接失败，请检查网络后重试')
    }
    const text = await response.text()
    let payload = null
    try {
      payload = text ? JSON.parse(text) : null
    } catch {
      payload = null
    }
    if (response.ok) return payload
    const error = payload && typeof payload === 'object' ? payload.error : null
    const retryAfter = Number.parseInt(response.headers.get('Retry-After') ?? '', 10)
    const err = new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ? readableMessage(error.message) : fallbackMessage(response.status),
      { retryAfter: Number.isFinite(retryAfter) ? retryAfter : null },
    )
    if (response.status === 401 && bearer) onUnauthorized(err)
    throw err
  }
}
