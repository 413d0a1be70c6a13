/** One word for the guest's `sh -c`: single-quoted, so `$(...)`, quotes and spaces arrive as written. */
export function shellQuote(word: string): string {
  if (word.includes('\0')) throw new TypeError('a shell word cannot contain NUL')
  return `'${word.replaceAll("'", `'\\''`)}'`
}
