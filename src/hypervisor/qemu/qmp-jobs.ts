import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { QmpError } from '../../errors.js'
import type { QmpClient } from './qmp-client.js'

interface JobInfo {
  id: string
  status: string
  error?: string
}

/**
 * Runs a QMP background job (`snapshot-save`, `snapshot-load`, …) to its end: QEMU reports a
 * job's failure only in `query-jobs`, not in the command's reply.
 */
export async function runJob(qmp: QmpClient, command: string, args: Record<string, unknown>, timeoutMs: number): Promise<void> {
  const jobId = `${command}-${randomBytes(3).toString('hex')}`
  const concluded = qmp.waitForEvent('JOB_STATUS_CHANGE', timeoutMs, (event) => {
    const data = event.data as { id?: string; status?: string } | undefined
    return data?.id === jobId && data.status === 'concluded'
  })
  try {
    await qmp.execute(command, { 'job-id': jobId, ...args })
    await concluded
  } catch (error) {
    concluded.catch(() => undefined)
    throw error
  }
  const jobs = await qmp.execute<JobInfo[]>('query-jobs')
  const job = jobs.find((entry) => entry.id === jobId)
  await qmp.execute('job-dismiss', { id: jobId }).catch(() => undefined)
  if (job?.error) throw new QmpError(job.error, command)
}

interface MigrationInfo {
  status?: string
  'error-desc'?: string
}

/** Polls `query-migrate` until the migration (outgoing or incoming) completes; rejects when it fails. */
export async function waitForMigration(qmp: QmpClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const info = await qmp.execute<MigrationInfo>('query-migrate')
    if (info.status === 'completed') return
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new QmpError(`migration ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`, 'migrate')
    }
    if (Date.now() > deadline) throw new QmpError(`migration not complete after ${timeoutMs} ms (status ${info.status ?? 'none'})`, 'migrate')
    await sleep(5)
  }
}
