/** What a backend needs to boot an image: files in the cache (or the user's own, never written). */
export interface BootableImage {
  name: string
  disk: string
  kernel?: string
  initrd?: string
  kernelArgs: string[]
  /** A line the guest prints on its serial console once sshd listens. */
  readyMarker?: string
  /** A line the guest prints (followed by the reason) when it cannot become ready. */
  failureMarker?: string
  /**
   * A guest command that returns once the first boot has finished (sshd may answer before
   * cloud-init is done): exit 0 when it went well, else non-zero with the reason on its output.
   */
  readyCommand?: string
  sshUser: string
  /** What the image is, for progress lines and `vmharness images`. */
  description?: string
}
