// The KVM lane (`npm run kvm-lane`, scripts/kvm-lane): runs part of the project's integration
// suite under a real KVM on a host that has none. The harness boots its own Debian image as an
// L1 guest under TCG with `cpuModel: 'max'` (AMD SVM with nested paging), loads kvm-amd in it with
// nested=1, copies this checkout and the host's node into it, asks the accelerator probe there
// for its verdict (it must choose KVM by itself), runs the chosen test files with the accelerator
// left to the probe, and measures tiny guests under that KVM against TCG on this host (L0), in
// the same run (with --tcg-in-l1, also TCG inside L1: over 8 minutes a boot here).
//
// QEMU 7.2's SVM emulation sometimes freezes L1 (HOST.md): a heartbeat in L1 writes to its
// serial console every few seconds, and a watchdog here destroys L1 when the console and the
// command output both stay silent too long. A frozen attempt is retried once, from a fresh L1.
import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { execa } from 'execa'
import { BootTimeoutError, Vm } from '../src/index.js'
import { debianImage } from '../src/images/debian-image.js'
import { packageRoot } from '../src/common/package-root.js'
import { sampleTiny, type AccelSample } from './accel-sample.js'
import { countOption, median, stringOption } from './stats.js'

/** What L1 needs to run QEMU, build the tiny image and pass the test suite's host check. */
const l1Packages = ['qemu-system-x86', 'qemu-utils', 'genisoimage', 'busybox-static', 'dropbear-bin', 'openssh-sftp-server', 'vde2', 'kmod', 'mmdebstrap', 'e2fsprogs']
/** Boot, exec, snapshots and restores, clean machines: the files that matter for an accelerator. */
const defaultFiles = ['test/integration/tiny-exec.test.ts', 'test/integration/tiny-lifecycle.test.ts', 'test/integration/snapshots.test.ts', 'test/integration/clean-machine.test.ts']
const heartbeatSeconds = 5
/** L1 boots in about a minute here (Debian with cloud-init, TCG, 1 vCPU); the image is built before. */
const l1BootTimeoutMs = 420_000
const silenceLimitMs = countOption('silence', 'KVM_LANE_SILENCE_S', 240) * 1000
const memoryMiB = countOption('memory', 'KVM_LANE_MEMORY', 3072)
const rounds = countOption('rounds', 'KVM_LANE_ROUNDS', 2)
const files = stringOption('files', 'KVM_LANE_FILES', defaultFiles.join(' ')).split(/\s+/).filter(Boolean)
const skipFigures = process.argv.includes('--no-figures')
const skipTests = process.argv.includes('--no-tests')
const tcgInL1 = process.argv.includes('--tcg-in-l1')

class L1Frozen extends Error {}

interface AttemptResult {
  verdictLine: string
  figures: unknown
  testsPassed: boolean
  testSummary: string
  timesMs: Record<string, number>
}

function log(line: string): void {
  process.stdout.write(`kvm-lane: ${line}\n`)
}

/** dist, sources, tests and node_modules (followed where it is a link), plus this host's node, as one tar.gz. */
async function packCheckout(workDir: string): Promise<string> {
  const root = packageRoot()
  const tarball = join(workDir, 'lane.tar.gz')
  const modules = await realpath(join(root, 'node_modules'))
  const nodeBinary = await realpath(process.execPath)
  await execa('tar', [
    '-czf', tarball,
    '--exclude=./.git', '--exclude=./node_modules', '--exclude=./.vitest-attachments', '--exclude=./.vitest-report*.json',
    '-C', root, '.',
    '-C', dirname(modules), `--transform=s,^${basename(modules)},node_modules,`, basename(modules),
    '-C', dirname(nodeBinary), `--transform=s,^${basename(nodeBinary)}$,.lane-node,`, basename(nodeBinary),
  ])
  return tarball
}

async function attempt(number: number, tarball: string): Promise<AttemptResult> {
  const timesMs: Record<string, number> = {}
  let lastSign = Date.now()
  const alive = () => {
    lastSign = Date.now()
  }
  const controller = new AbortController()
  let l1: Vm | undefined
  const watchdog = setInterval(() => {
    if (Date.now() - lastSign <= silenceLimitMs) return
    log(`attempt ${number}: L1 silent for ${Math.round((Date.now() - lastSign) / 1000)} s (console and commands): taking it as frozen, destroying it`)
    controller.abort(new L1Frozen(`L1 fell silent for more than ${silenceLimitMs / 1000} s (the nested-SVM freeze of QEMU 7.2? see HOST.md)`))
    void l1?.destroy()
  }, 2_000)
  const run = async (what: string, command: string, timeoutMs = 3_600_000) => {
    const started = Date.now()
    log(`[${what}] ${command.split('\n')[0]}`)
    const result = await l1!.exec(command, {
      timeoutMs,
      signal: controller.signal,
      onStdout: (chunk) => {
        alive()
        process.stdout.write(chunk)
      },
      onStderr: (chunk) => {
        alive()
        process.stderr.write(chunk)
      },
    })
    timesMs[what] = Date.now() - started
    log(`[${what}] exit ${result.exitCode} after ${(timesMs[what] / 1000).toFixed(1)} s`)
    return result
  }
  try {
    const bootStarted = Date.now()
    log(`attempt ${number}: booting L1 (Debian 12, TCG, cpuModel 'max', 1 vCPU, ${memoryMiB} MiB; the image build the first time takes a few minutes)`)
    l1 = await Vm.start(
      { name: 'kvm-lane-l1', image: { name: 'debian', packages: l1Packages }, machine: 'pc', cpuModel: 'max', cpus: 1, memory: memoryMiB, accel: 'tcg', bootTimeoutMs: l1BootTimeoutMs },
      { signal: controller.signal, onProgress: log },
    ).catch((error: unknown) => {
      // Progress lines tick on while L1 boots, so only the boot timeout notices a frozen boot.
      throw error instanceof BootTimeoutError ? new L1Frozen(`L1 did not boot in time: ${error.message}`) : error
    })
    timesMs.l1Boot = Date.now() - bootStarted
    log(`L1 answered after ${(timesMs.l1Boot / 1000).toFixed(1)} s`)
    l1.console().on('data', alive)
    await l1.succeed(
      `systemd-run --unit kvm-lane-heartbeat sh -c 'while :; do echo "kvm-lane heartbeat $(date +%s)" > /dev/ttyS0; sleep ${heartbeatSeconds}; done'`,
    )
    const modules = await run('kvm modules', 'modprobe kvm_amd nested=1 && grep -o -m1 -w "svm\\|npt" /proc/cpuinfo | sort -u | tr "\\n" " " && echo && cat /sys/module/kvm_amd/parameters/nested && ls -l /dev/kvm')
    if (modules.exitCode !== 0) throw new Error(`kvm-amd did not load in L1: ${modules.stderr}`)
    const copyStarted = Date.now()
    await l1.putFile(tarball, '/root/lane.tar.gz')
    timesMs.copy = Date.now() - copyStarted
    log(`copied ${(((await readFile(tarball)).length) / 1048576).toFixed(0)} MiB in ${(timesMs.copy / 1000).toFixed(1)} s`)
    const unpack = await run('unpack', 'mkdir -p /root/lane && tar -xzf /root/lane.tar.gz -C /root/lane && install -m 0755 /root/lane/.lane-node /usr/local/bin/node && rm /root/lane.tar.gz && node --version')
    if (unpack.exitCode !== 0) throw new Error('unpacking the checkout in L1 failed')
    // The probe's verdict, as `accel: 'auto'` will take it: it must be KVM, chosen by the probe.
    const doctor = await run('doctor', 'cd /root/lane && node dist/src/cli/main.js doctor 2>&1', 600_000)
    const verdictLine = doctor.stdout.split('\n').find((text) => text.startsWith('accelerator:'))?.trim() ?? ''
    let testsPassed = true
    let testSummary = 'not run'
    if (!skipTests) {
      if (!/accelerator: KVM/.test(verdictLine)) throw new Error(`the probe in L1 did not choose KVM: ${verdictLine || doctor.stdout + doctor.stderr}`)
      // VMHARNESS_ACCEL is left unset: 'auto' takes the probe's cached verdict (KVM, checked above).
      const tests = await run('tests', `cd /root/lane && env -u VMHARNESS_ACCEL CI=1 node node_modules/vitest/vitest.mjs run --project integration --reporter=verbose ${files.join(' ')} 2>&1`)
      testsPassed = tests.exitCode === 0
      testSummary = tests.stdout.split('\n').filter((text) => /^\s*(Test Files|Tests)\s/.test(text.replace(/\x1b\[[0-9;]*m/g, ''))).map((text) => text.replace(/\x1b\[[0-9;]*m/g, '').trim()).join('; ')
    }
    let figures: unknown
    if (!skipFigures) {
      const measured = await run('figures', `cd /root/lane && VMHARNESS_PROGRESS=0 node dist/bench/kvm-lane-figures.js --rounds ${rounds} --accels ${tcgInL1 ? 'kvm,tcg' : 'kvm'}`)
      const line = measured.stdout.split('\n').find((text) => text.startsWith('KVM-LANE-FIGURES '))
      figures = line ? JSON.parse(line.slice('KVM-LANE-FIGURES '.length)) : undefined
    }
    return { verdictLine, figures, testsPassed, testSummary, timesMs }
  } catch (error) {
    if (controller.signal.aborted) throw controller.signal.reason
    throw error
  } finally {
    clearInterval(watchdog)
    await l1?.destroy().catch(() => {})
  }
}

const workDir = await mkdtemp(join(tmpdir(), 'kvm-lane-'))
try {
  const tarball = await packCheckout(workDir)
  log(`L1 image: ${(await debianImage({ packages: l1Packages, onProgress: log })).disk}`)
  let result: AttemptResult | undefined
  for (let number = 1; number <= 2 && !result; number++) {
    try {
      result = await attempt(number, tarball)
    } catch (error) {
      if (!(error instanceof L1Frozen) || number === 2) throw error
      log(`${error.message}; retrying once with a fresh L1`)
    }
  }
  const summary = result as AttemptResult
  log(`verdict in L1: ${summary.verdictLine}`)
  log(`times: ${Object.entries(summary.timesMs).map(([what, ms]) => `${what} ${(ms / 1000).toFixed(1)} s`).join(', ')}`)
  type Medians = { bootMs: number; restoreMs: number }
  const figures = summary.figures as { kvm?: Medians; tcg?: Medians; samples: AccelSample[] } | undefined
  if (figures?.kvm) {
    // TCG on this host, after L1 is gone (the two would share the CPU): the same tiny guest, the same steps.
    const host: AccelSample[] = []
    for (let round = 0; round < rounds; round++) host.push(await sampleTiny('tcg'))
    const onHost = { bootMs: median(host.map((s) => s.bootMs)), restoreMs: median(host.map((s) => s.restoreMs)) }
    const kvm = figures.kvm
    const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`
    log(`samples, nested KVM in L1: ${figures.samples.filter((s) => s.accel === 'kvm').map((s) => `${seconds(s.bootMs)}/${seconds(s.restoreMs)}`).join(', ')}; TCG on this host: ${host.map((s) => `${seconds(s.bootMs)}/${seconds(s.restoreMs)}`).join(', ')} (boot/restore)`)
    for (const [what, field] of [['boot → first command', 'bootMs'], ['restore → first command', 'restoreMs']] as const) {
      const inL1 = figures.tcg ? `, TCG in L1 ${seconds(figures.tcg[field])}` : ''
      log(`${what} (medians of ${rounds}): nested KVM in L1 ${seconds(kvm[field])}, TCG on this host ${seconds(onHost[field])}${inL1}; nested KVM / host TCG ${(kvm[field] / onHost[field]).toFixed(2)}x`)
    }
  }
  log(`tests: ${summary.testsPassed ? 'passed' : 'FAILED'} (${summary.testSummary})`)
  process.exitCode = summary.testsPassed ? 0 : 1
} finally {
  await rm(workDir, { recursive: true, force: true })
}
