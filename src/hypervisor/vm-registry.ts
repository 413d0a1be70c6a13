import { HypervisorError } from '../errors.js'
import type { VmHandle } from './hypervisor.js'

/** The VMs one backend instance manages, by handle: each backend keeps its own record type. */
export class VmRegistry<T> {
  private readonly byId = new Map<string, T>()

  add(handle: VmHandle, record: T): void {
    this.byId.set(handle.id, record)
  }

  /** The VM's record; undefined once it is destroyed or kept. */
  find(handle: VmHandle): T | undefined {
    return this.byId.get(handle.id)
  }

  /** The VM's record; a HypervisorError once it is destroyed or kept, or for a handle of another backend. */
  lookUp(handle: VmHandle): T {
    const record = this.byId.get(handle.id)
    if (!record) throw new HypervisorError('was destroyed, or was not prepared by this backend', { vm: handle.name })
    return record
  }

  delete(handle: VmHandle): void {
    this.byId.delete(handle.id)
  }
}
