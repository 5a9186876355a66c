// The 管理后台's staff session (sessionStorage), shared by its pages.
import { createStaffSession } from '../staff/session.js'

export const staff = createStaffSession('admin')
export const api = staff.api
