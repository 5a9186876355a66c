// Paying through WeChat Pay's JSAPI inside WeChat's browser: the page hands the server's
// pay_params (appId, timeStamp, nonceStr, package, signType, paySign) to
// WeixinJSBridge.invoke('getBrandWCPayRequest'); WeChat shows its own cashier and calls back.
// Its answer is only the person's side: whether the money arrived is what the server learns from
// the gateway's signed notification, so the page asks the server afterwards (usePay.js).

const READY_WAIT_MS = 1500

function bridge() {
  if (globalThis.WeixinJSBridge?.invoke) return Promise.resolve(globalThis.WeixinJSBridge)
  // WeChat injects the bridge a moment after the page starts; outside WeChat it never comes
  return new Promise((resolve) => {
    const done = () => resolve(globalThis.WeixinJSBridge?.invoke ? globalThis.WeixinJSBridge : null)
    document.addEventListener('WeixinJSBridgeReady', done, { once: true })
    setTimeout(done, READY_WAIT_MS)
  })
}

/** 'ok' | 'cancel' | 'fail' | 'unavailable' (not inside WeChat). */
export async function wechatPay(params) {
  const wx = await bridge()
  if (!wx) return 'unavailable'
  return new Promise((resolve) => {
    wx.invoke('getBrandWCPayRequest', params, (res) => {
      const message = String(res?.err_msg ?? '')
      if (message.endsWith(':ok')) resolve('ok')
      else if (message.endsWith(':cancel')) resolve('cancel')
      else resolve('fail')
    })
  })
}
