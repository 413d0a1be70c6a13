import { checkRequirements, installScript, missingPackages } from '../../src/host/requirements.js'
import { sweepStaleRuns } from '../../src/host/run-dir.js'
import { tinyImage } from '../../src/images/tiny-image.js'

/** Fails the run at once, naming the Debian packages, when the host cannot boot guests; builds the tiny image once. */
export default async function setup(): Promise<() => Promise<void>> {
  const missing = missingPackages(await checkRequirements())
  if (missing.length > 0) {
    throw new Error(`this host lacks Debian packages the integration tests need: ${missing.join(' ')}\n  install them with: ${installScript} (as root), or: vmharness doctor --install`)
  }
  await tinyImage({ onProgress: (line) => process.stderr.write(`vmharness: ${line}\n`) })
  // Workers end without a normal exit, so their run directories (keys, sockets) are swept once they are gone.
  return async () => {
    await sweepStaleRuns()
  }
}
