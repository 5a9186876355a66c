// The doctor's sessions as the pages name them.
export const PERIODS = { am: '上午', pm: '下午', night: '夜间' }
/** How long a session of each period runs (hours), as the schedule plans it. */
const PERIOD_HOURS = { am: 4, pm: 4, night: 3 }

/** The session to open by default: today's in progress, else today's next, else today's first. */
export function currentSession(sessions, today, now = Date.now()) {
  const todays = sessions.filter((s) => s.day === today)
  const running = todays.find((s) => {
    const start = Date.parse(s.starts_at)
    return start <= now && now < start + (PERIOD_HOURS[s.period] ?? 4) * 3600_000
  })
  return running ?? todays.find((s) => Date.parse(s.starts_at) > now) ?? todays[0] ?? null
}

/** YYYY-MM-DD in Shanghai. */
export function shanghaiDate(at = new Date()) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit' }).format(at)
}
