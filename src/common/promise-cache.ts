/**
 * Remembers the promise each key's work returned, so that the work runs once per key however
 * many callers ask at the same time or later. A promise that rejects is forgotten, so the next
 * call tries the work again instead of repeating the failure forever.
 */
export class PromiseCache<K, V> {
  private readonly promises = new Map<K, Promise<V>>()

  get(key: K, work: () => Promise<V>): Promise<V> {
    let promise = this.promises.get(key)
    if (!promise) {
      const started = work()
      this.promises.set(key, started)
      started.catch(() => {
        if (this.promises.get(key) === started) this.promises.delete(key)
      })
      promise = started
    }
    return promise
  }
}
