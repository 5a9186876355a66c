// Chinese names the message-center pages share: categories, audiences, channels, circuit states.
export const CATEGORY_NAMES = {
  visit: '预约与就诊', payment: '缴费与退款', pharmacy: '取药与用药', report: '检查检验报告', inpatient: '住院与手术',
  reminder: '复诊与随访提醒', consultation: '在线问诊', education: '健康宣教', hospital: '医院通知', work: '工作提醒',
  clinical: '危急值与临床警报',
}
export const AUDIENCE_NAMES = { patient: '患者', staff: '医护人员' }
export const CHANNEL_NAMES = { wechat: '微信', sms: '短信', alipay: '支付宝' }
export const CIRCUIT = {
  closed: { text: '正常', type: 'success' },
  open: { text: '熔断', type: 'danger' },
  half_open: { text: '试探', type: 'warning' },
}
export const STATUS_NAMES = {
  sending: '发送中', retrying: '重试中', deferred: '免打扰延后', sent: '已发送', dead: '死信', in_app: '仅站内', read: '已读',
}
