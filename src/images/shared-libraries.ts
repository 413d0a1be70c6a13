import { execa } from 'execa'

export interface SharedLibrary {
  /** The path the dynamic linker will look for inside the guest, as ldd names it. */
  guestPath: string
  /** Where that file is on the host. */
  hostPath: string
}

/** The libraries (and the program interpreter) that a dynamic executable loads, from `ldd`. */
export async function sharedLibraries(executable: string): Promise<SharedLibrary[]> {
  const { stdout } = await execa('ldd', [executable], { reject: false })
  const libraries: SharedLibrary[] = []
  for (const line of stdout.split('\n')) {
    const linked = /^\s*(\S+) => (\/\S+)/.exec(line)
    const interpreter = /^\s*(\/\S+) \(0x/.exec(line)
    if (linked?.[1] && linked[2]) libraries.push({ guestPath: libraryDir(linked[2]) + '/' + linked[1], hostPath: linked[2] })
    else if (interpreter?.[1]) libraries.push({ guestPath: interpreter[1], hostPath: interpreter[1] })
  }
  return libraries
}

function libraryDir(path: string): string {
  return path.slice(0, path.lastIndexOf('/'))
}
