// Dates and times as people in the hospital read them: zh-CN, Asia/Shanghai, whatever the device's zone.
export const TIME_ZONE = 'Asia/Shanghai'

const dayFormat = new Intl.DateTimeFormat('zh-CN', { timeZone: TIME_ZONE, month: 'long', day: 'numeric', weekday: 'long' })
const timeFormat = new Intl.DateTimeFormat('zh-CN', { timeZone: TIME_ZONE, hour: '2-digit', minute: '2-digit', hour12: false })
const dateTimeFormat = new Intl.DateTimeFormat('zh-CN', {
  timeZone: TIME_ZONE, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false,
})

/** "12月4日星期五" */
export const formatDay = (at = new Date()) => dayFormat.format(new Date(at))
/** "09:30" */
export const formatTime = (at) => timeFormat.format(new Date(at))
/** "2026/12/04 09:30" */
export const formatDateTime = (at) => dateTimeFormat.format(new Date(at))

/** The hour in Shanghai, for a greeting. */
export function shanghaiHour(at = new Date()) {
  return Number(new Intl.DateTimeFormat('en-GB', { timeZone: TIME_ZONE, hour: '2-digit', hour12: false }).format(at)) % 24
}
