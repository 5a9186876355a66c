// Money as the patient reads it: fen (the API's unit) -> "¥12.30"; and what a status means.

/** 12300 -> "¥123.00" */
export function yuan(fen) {
  const value = Number(fen ?? 0)
  const sign = value < 0 ? '-' : ''
  const abs = Math.abs(value)
  return `${sign}¥${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`
}

/** A bill's status in Chinese (shown as text, never only as a colour). */
export const BILL_STATUS = { unpaid: '待缴费', paid: '已缴费', refunded: '已退费', cancelled: '已撤销' }

/** A payment's (bill order's) status in Chinese. */
export const ORDER_STATUS = { created: '待支付', paid: '已支付', refunding: '退款中', refunded: '已退款', closed: '已关闭' }

export const statusTag = (status) => ({ unpaid: 'warning', paid: 'success', created: 'warning' })[status] ?? 'default'
