// Prints, from vitest's JSON report, each skipped test with its reason, then the closing
// "N passed, N failed, N skipped" line, for CI to read.
import { readFileSync } from 'node:fs'
import { relative } from 'node:path'

// Several reports (one per Node version the tests ran on) add up; the first is the main run's.
const paths = process.argv.length > 2 ? process.argv.slice(2) : ['.vitest-report.json']
let passed = 0
let failed = 0
const skipped = []
for (const [index, path] of paths.entries()) {
  let report
  try {
    report = JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    console.log(`vitest wrote no JSON report at ${path} (did it crash before running tests?)`)
    failed++
    continue
  }
  const label = index === 0 ? '' : `[${path}] `
  let failedHere = 0
  for (const file of report.testResults ?? []) {
    const tests = file.assertionResults ?? []
    const name = relative(process.cwd(), file.name ?? '')
    for (const test of tests) {
      if (test.status === 'passed') passed++
      else if (test.status === 'failed') failedHere++
      else if (test.status === 'skipped' || test.status === 'todo') {
        // test/helpers/skip.ts records the reason in meta: vitest's JSON report drops skip notes.
        const reason = test.meta?.skipReason ?? (test.status === 'todo' ? 'marked todo' : 'no reason recorded (marked .skip, or skipped without skipBecause)')
        skipped.push(`skipped: ${label}${name} > ${test.fullName}: ${reason}`)
      }
      // Pending: left by a crashed worker, it never ran. Count it as failed rather than lose it.
      else failedHere++
    }
    // A file that failed without a failed test could not be loaded or run at all.
    if (file.status === 'failed' && !tests.some((test) => test.status === 'failed')) failedHere++
  }
  if (report.success === false && failedHere === 0) failedHere = 1
  failed += failedHere
}
for (const line of skipped) console.log(line)
console.log(`${passed} passed, ${failed} failed, ${skipped.length} skipped`)
process.exit(failed > 0 ? 1 : 0)
