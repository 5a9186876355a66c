// Family members (就诊人, ME-2): how a relation and a state read in Chinese, and the face check's
// hand-over to the provider's page (ME-1).
import { api } from '../../session.js'

export const RELATIONS = { self: '本人', child: '子女', parent: '父母', spouse: '配偶', other: '其他' }
export const MAX_PEOPLE = 5
const FACE_KEY = 'carehub.h5.face'

/** Start the face check of a family member: the provider's page opens and sends the person back to /h5/me/verify. */
export async function startFaceCheck(patientId) {
  const { url } = await api('POST', `/api/v1/me/patients/${encodeURIComponent(patientId)}/face`)
  try {
    sessionStorage.setItem(FACE_KEY, patientId)
  } catch {
    // without storage the return page asks for every unverified person
  }
  window.location.assign(url)
}

/** Whose face check the provider came back from (set before leaving for its page). */
export function pendingFaceCheck() {
  try {
    return sessionStorage.getItem(FACE_KEY)
  } catch {
    return null
  }
}

export function faceCheckDone() {
  try {
    sessionStorage.removeItem(FACE_KEY)
  } catch {
    // nothing kept
  }
}
