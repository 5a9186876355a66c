// What the 门诊管理 pages share: the Chinese names of periods, kinds and statuses, the doctors and
// departments for the pickers, dates in Shanghai.
import { reactive } from 'vue'
import { api } from '../../staff.js'

export const PERIODS = { am: '上午', pm: '下午', night: '夜间' }
export const ROSTER_KINDS = {
  regular: '常规排班', extra: '加诊', add_slots: '加号', cancel: '停诊', leave: '请假', substitute: '替诊',
}
/** status -> [label, Element Plus tag type] */
export const ROSTER_STATUS = { submitted: ['待审批', 'warning'], approved: ['已通过', 'success'], rejected: ['已驳回', 'danger'] }
export const SESSION_STATUS = { open: ['出诊', 'success'], cancelled: ['已停诊', 'danger'] }
export const BOOKING_STATUS = {
  held: '待支付', booked: '已预约', checked_in: '已签到', seen: '已就诊', cancelled: '已取消', released: '已释放', no_show: '爽约',
}
export const CHANNELS = { app: '患者端', kiosk: '自助机', partner: '合作平台' }

export const yuan = (fen) => `¥${(Number(fen ?? 0) / 100).toFixed(2)}`

const dayFormat = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit' })
/** "2026-12-04" in Shanghai, `days` days from today */
export function shanghaiDay(days = 0) {
  return dayFormat.format(new Date(Date.now() + days * 86_400_000))
}

const directory = reactive({ doctors: [], departments: [], loaded: false, error: '' })
let loading = null

/** The doctors (id, name, department) and departments of the hospital, loaded once per page load. */
export function useDirectory() {
  if (!loading) {
    loading = Promise.all([api('GET', '/api/v1/doctors'), api('GET', '/api/v1/departments')])
      .then(([d, p]) => {
        directory.doctors = d.doctors ?? []
        directory.departments = p.departments ?? []
        directory.loaded = true
      })
      .catch((err) => {
        directory.error = err.message
        loading = null
      })
  }
  return directory
}

export function doctorName(id) {
  return directory.doctors.find((d) => d.id === id)?.name ?? id
}

export function departmentName(id) {
  return directory.departments.find((d) => d.id === id)?.name ?? id
}
