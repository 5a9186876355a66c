// The Chinese names of the statistics' codes, and money in yuan.
export const CHANNELS = { app: '患者端(App/公众号)', kiosk: '自助机', partner: '第三方平台' }
export const METHODS = { self: '自费', insurance: '医保', mixed: '医保+自费' }

const money = new Intl.NumberFormat('zh-CN', { minimumFractionDigits: 2, maximumFractionDigits: 2 })
const whole = new Intl.NumberFormat('zh-CN')
export const yuan = (fen) => `¥${money.format(fen / 100)}`
export const count = (n) => whole.format(n)
export const percent = (rate) => (rate == null ? '—' : `${(rate * 100).toFixed(1)}%`)

/** The query string of a statistics request: months and the filters that are set. */
export function statisticsQuery(filters, extra = {}) {
  const query = new URLSearchParams()
  const [from, to] = filters.months ?? []
  if (from) query.set('from', from)
  if (to) query.set('to', to)
  for (const name of ['department', 'doctor', 'channel']) if (filters[name]) query.set(name, filters[name])
  for (const [name, value] of Object.entries(extra)) query.set(name, value)
  return query.toString()
}
