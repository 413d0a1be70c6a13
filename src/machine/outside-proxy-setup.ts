import { HypervisorError } from '../errors.js'
import { outsideProxyAddress } from '../network/outside-address.js'
import type { ExecResult } from '../common/exec-result.js'

/** Tells login shells and apt (where there is one) to go out through the harness's proxy. */
export async function pointAtOutsideProxy(session: { exec(command: string): Promise<ExecResult> }, vmName: string): Promise<void> {
  const url = `http://${outsideProxyAddress.host}:${outsideProxyAddress.port}`
  const script = [
    'mkdir -p /etc/profile.d',
    `printf 'export http_proxy=${url} https_proxy=${url} HTTP_PROXY=${url} HTTPS_PROXY=${url}\\n' > /etc/profile.d/vmharness-proxy.sh`,
    `{ grep -qs vmharness-proxy /etc/profile || printf '. /etc/profile.d/vmharness-proxy.sh # vmharness-proxy\\n' >> /etc/profile; }`,
    `if [ -d /etc/apt/apt.conf.d ]; then printf 'Acquire::http::Proxy "${url}";\\nAcquire::https::Proxy "${url}";\\n' > /etc/apt/apt.conf.d/80vmharness-proxy; fi`,
  ].join(' && ')
  const result = await session.exec(script)
  if (result.exitCode !== 0) throw new HypervisorError(`could not point the guest at the outside-access proxy: ${result.stderr.trim()}`, { vm: vmName })
}
