// Prints the closing "N passed, N failed" line from vitest's JSON report, for CI to read.
import { readFileSync } from 'node:fs'

const path = process.argv[2] ?? '.vitest-report.json'
let report
try {
  report = JSON.parse(readFileSync(path, 'utf8'))
} catch {
  console.log('vitest wrote no JSON report (did it crash before running tests?)')
  console.log('0 passed, 1 failed')
  process.exit(1)
}
const passed = report.numPassedTests ?? 0
// A test left pending by a crashed worker never ran: count it as failed rather than lose it.
const notRun = (report.numTotalTests ?? 0) - passed - (report.numFailedTests ?? 0) - (report.numPendingTests ?? 0) - (report.numTodoTests ?? 0)
const failed = (report.numFailedTests ?? 0) + Math.max(0, notRun) + (report.success === false && report.numFailedTests === 0 ? 1 : 0)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
