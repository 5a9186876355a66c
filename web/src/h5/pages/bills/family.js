// The family members' masked names by id, for pages that list things per person.
import { api } from '../../session.js'

export async function familyNames() {
  const { patients } = await api('GET', '/api/v1/me/patients')
  return Object.fromEntries(patients.map((p) => [p.id, p.relation === 'self' ? `${p.name}（本人）` : p.name]))
}
