import type { TestContext } from 'vitest'

declare module 'vitest' {
  interface TaskMeta {
    /** Why a test skipped itself: the JSON report carries `meta`, and .ci/report-summary.mjs prints it. */
    skipReason?: string
  }
}

/** Skips the running test, with a reason every reporter can show (vitest's JSON report drops skip notes). */
export function skipBecause(context: TestContext, reason: string): never {
  context.task.meta.skipReason = reason
  return context.skip(reason)
}
