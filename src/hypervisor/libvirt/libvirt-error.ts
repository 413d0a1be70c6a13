import { HypervisorError, type HypervisorErrorDetails } from '../../errors.js'

/** A virsh command that failed: libvirt's own message, and the command that got it. */
export class LibvirtError extends HypervisorError {
  constructor(
    message: string,
    readonly command: readonly string[],
    readonly stderr = '',
    details: HypervisorErrorDetails = {},
  ) {
    super(`libvirt: ${message} (virsh ${command.join(' ')})`, details)
  }
}
