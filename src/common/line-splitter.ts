/** A 'data' listener that hands on whole lines, keeping a partial line until its end arrives. */
export function lineSplitter(onLine: (line: string) => void): (chunk: Buffer | string) => void {
  let partial = ''
  return (chunk) => {
    const lines = (partial + chunk.toString()).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) onLine(line.replace(/\r$/, ''))
  }
}
