#!/usr/bin/env node
import { isVmHarnessError } from '../errors.js'
import { allPackages } from '../host/requirements.js'
import { doctor } from './doctor.js'
import { cacheCommand } from './cache-command.js'
import { imagesCommand } from './images-command.js'
import { keptCommand, sshIntoKept } from './kept-commands.js'

const usage = `usage: vmharness <command>

commands:
  doctor [--install] [--tests]
                       what this host lacks to boot guests, the accelerator verdict and why,
                       whether libvirt's daemon answers (fails doctor only with VMHARNESS_BACKEND=libvirt);
                       --install installs the missing Debian or Ubuntu packages (as root);
                       --tests also checks (and installs) what this project's own tests need
  packages [--tests]   the Debian packages vmharness needs, one line (for install scripts)
  ssh <name|id> [cmd]  a shell (or one command) in a VM kept by VMHARNESS_KEEP=on-failure
  images [list | build tiny|debian [--package P]... | prune [--older-than DAYS | --all] [--max-size SIZE]]
                       the image and golden-snapshot cache with sizes; build an image; prune
  cache key [--config VITEST_CONFIG] [--explain] MODULE...
                       a key for a CI cache step: changes when an image recipe or a golden
                       snapshot input of the machines the modules declare changes
  kept [--stop <name|id> | --stop-all]
                       the VMs kept for debugging, and how to reach them; or stop them
`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'doctor': {
      const unknown = rest.filter((arg) => arg !== '--install' && arg !== '--tests')
      if (unknown.length > 0) {
        process.stderr.write(`vmharness doctor: unknown option ${unknown[0]}\n${usage}`)
        return 2
      }
      return doctor({ install: rest.includes('--install'), tests: rest.includes('--tests'), write: (line) => process.stdout.write(line + '\n') })
    }
    case 'ssh':
      return sshIntoKept(rest)
    case 'images':
      return imagesCommand(rest, (text) => process.stdout.write(text))
    case 'cache':
      return cacheCommand(rest, (text) => process.stdout.write(text))
    case 'kept':
      return keptCommand(rest, (text) => process.stdout.write(text))
    case 'packages': {
      const unknown = rest.filter((arg) => arg !== '--tests')
      if (unknown.length > 0) {
        process.stderr.write(`vmharness packages: unknown option ${unknown[0]}\n${usage}`)
        return 2
      }
      process.stdout.write(allPackages(rest.includes('--tests') ? ['run', 'test'] : ['run']).join(' ') + '\n')
      return 0
    }
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(usage)
      return command === undefined ? 2 : 0
    default:
      process.stderr.write(`vmharness: unknown command '${command}'\n${usage}`)
      return 2
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`vmharness: ${isVmHarnessError(error) ? error.message : String((error as Error)?.stack ?? error)}\n`)
    process.exit(1)
  },
)
