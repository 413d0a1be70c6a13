import type { HostDistro } from '../host/host-distro.js'
import { packageOn, type RequirementCheck } from '../host/requirements.js'

/** What `vmharness doctor --install` can do on this host. */
export type InstallPlan =
  /** apt-get installs `packages` (the distribution's names); `cannot` says what it cannot install, and why. */
  | { kind: 'install'; packages: string[]; cannot: string[] }
  /** Nothing is installed; `reason` says why, in one line. */
  | { kind: 'refuse'; reason: string }

export interface InstallHost {
  distro: HostDistro
  root: boolean
  /** apt-get's path, or undefined where there is none. */
  aptGet: string | undefined
}

/** What to install for the requirements `checks` found missing, in the host distribution's package names. */
export function planInstall(checks: RequirementCheck[], host: InstallHost): InstallPlan {
  const absent = checks.filter((check) => !check.path).map((check) => check.requirement)
  const { distro } = host
  if (!distro.family) {
    const what = [...new Set(absent.map((requirement) => requirement.what))].join('; ')
    return { kind: 'refuse', reason: `vmharness doctor --install cannot install on ${distro.name}: it knows the package names of Debian and Ubuntu only; install these yourself: ${what}` }
  }
  const packages: string[] = []
  const cannot: string[] = []
  for (const requirement of absent) {
    const found = packageOn(requirement, distro.family)
    if ('name' in found) {
      if (!packages.includes(found.name)) packages.push(found.name)
    } else {
      cannot.push(`cannot install ${requirement.what} on ${distro.name}: ${found.none}`)
    }
  }
  if (packages.length > 0 && !host.aptGet) return { kind: 'refuse', reason: `vmharness doctor --install cannot install on ${distro.name}: apt-get is not on this host; install these yourself: ${packages.join(' ')}` }
  if (packages.length > 0 && !host.root) return { kind: 'refuse', reason: `vmharness doctor --install must run as root to install: ${packages.join(' ')}` }
  return { kind: 'install', packages, cannot }
}
