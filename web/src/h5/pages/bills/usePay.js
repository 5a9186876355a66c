// Pay some unpaid bills of one family member: one order (POST /api/v1/me/bills/pay, with a
// client_ref so a retried tap finds the same order), WeChat's cashier (wxpay.js), then the
// server's word: the order is polled until the gateway's notification has settled it.
import { ref } from 'vue'
import { useRouter } from 'vue-router'
import { showDialog, showToast } from 'vant'
import { api } from '../../session.js'
import { wechatPay } from './wxpay.js'

const CONFIRM_MS = 30_000

function newRef() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID()
  return `${Date.now().toString(16)}${Math.random().toString(16).slice(2)}`
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export function usePay() {
  const router = useRouter()
  const paying = ref(false)
  const stage = ref('')

  async function settled(outTradeNo) {
    const until = Date.now() + CONFIRM_MS
    for (;;) {
      const order = await api('GET', `/api/v1/me/bill-orders/${encodeURIComponent(outTradeNo)}`)
      if (order.status !== 'created' || Date.now() > until) return order
      await sleep(800)
    }
  }

  /** Pay ``billIds``; on success the order's page opens. Errors are shown (the server's message). */
  async function pay(billIds) {
    if (paying.value || !billIds.length) return null
    paying.value = true
    try {
      stage.value = '正在创建支付订单…'
      const { order, pay_params: params } = await api('POST', '/api/v1/me/bills/pay', { bill_ids: billIds, client_ref: newRef() })
      if (params) {
        stage.value = '请在微信支付中完成付款…'
        const outcome = await wechatPay(params)
        if (outcome === 'cancel') {
          showToast('已取消支付')
          return null
        }
        if (outcome === 'unavailable') {
          await showDialog({ title: '请在微信中支付', message: '当前浏览器无法调起微信支付，请在微信中打开本页面完成缴费。' })
          return null
        }
        if (outcome === 'fail') {
          await showDialog({ title: '支付未完成', message: '微信支付未成功，请稍后重试。' })
          return null
        }
      }
      stage.value = '正在确认支付结果…'
      const done = await settled(order.out_trade_no)
      if (done.status === 'created') showToast('支付结果确认中，请稍后在缴费记录中查看')
      await router.push({ name: 'bill-order', params: { no: done.out_trade_no } })
      return done
    } catch (err) {
      await showDialog({ title: '缴费未完成', message: err.message || '缴费失败，请稍后重试' })
      return null
    } finally {
      paying.value = false
      stage.value = ''
    }
  }

  return { pay, paying, stage }
}
