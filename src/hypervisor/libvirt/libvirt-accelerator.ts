import { PromiseCache } from '../../common/promise-cache.js'
import { acceleratorVerdict, chooseAccelerator, type AcceleratorVerdict } from '../../host/accelerator.js'
import { findBinary } from '../../host/find-binary.js'
import { findGuestKernel } from '../../host/guest-kernel.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import type { LibvirtConnection } from './libvirt-connection.js'

const verdicts = new PromiseCache<string, AcceleratorVerdict>()

/** 'kvm' where the hypervisor host's KVM works, else 'tcg'; the spec's accel decides as it does for the QEMU backend. */
export function libvirtAccelerator(connection: LibvirtConnection, spec: Pick<ResolvedSpec, 'accel'>): Promise<'kvm' | 'tcg'> {
  return chooseAccelerator(spec.accel, () => verdicts.get(connection.uri, () => probe(connection)))
}

/**
 * libvirt's domain capabilities say whether it would start a KVM domain at all. That is not
 * proof (a /dev/kvm can open and still hang every guest, HOST.md), so on this machine the QEMU
 * backend's probe boot decides too; on a remote host libvirt's word is taken.
 */
async function probe(connection: LibvirtConnection): Promise<AcceleratorVerdict> {
  const offered = await connection.run(['domcapabilities', '--virttype', 'kvm', '--arch', 'x86_64']).then(
    (xml) => /<domain>kvm<\/domain>/.test(xml),
    () => false,
  )
  if (!offered) return { accel: 'tcg', reason: `libvirt at ${connection.uri} offers no KVM domains`, probed: false }
  if (!connection.target.remote) {
    const qemu = await findBinary('qemu-system-x86_64')
    if (qemu) return acceleratorVerdict({ qemu, kernel: await findGuestKernel() })
  }
  return { accel: 'kvm', reason: `libvirt at ${connection.uri} offers KVM domains`, probed: false }
}
