// Outpatient bills (OUT-7, OUT-13, OUT-14, ME-6): pending bills and paying them through WeChat
// Pay's JSAPI, the page a printed slip's QR code opens, fee details per visit, payment history,
// self-service test orders.
const page = (name) => () => import(`../pages/bills/${name}.vue`)

export default [
  { path: '/bills', name: 'bills', component: page('BillsPage'), meta: { title: '门诊缴费' } },
  { path: '/slip/:code', name: 'slip', component: page('SlipPage'), meta: { title: '单据缴费' }, props: true },
  { path: '/bills/fees', name: 'fees', component: page('FeesPage'), meta: { title: '费用明细' } },
  { path: '/bills/orders', name: 'bill-orders', component: page('OrdersPage'), meta: { title: '缴费记录' } },
  { path: '/bills/orders/:no', name: 'bill-order', component: page('OrderPage'), meta: { title: '缴费详情' }, props: true },
  { path: '/tests', name: 'tests', component: page('TestsPage'), meta: { title: '自助开单' } },
]
