// The 医生工作站's staff session (sessionStorage), shared by its pages.
import { createStaffSession } from '../staff/session.js'

export const staff = createStaffSession('doctor')
export const api = staff.api
