// A fixed-length bit set (most significant bit first, as BitTorrent's have
// message) that says which pieces of a blob a node holds.

export class Bitfield {
  readonly bytes: Uint8Array
  constructor (readonly length: number, bytes?: Uint8Array) {
    const n = Math.ceil(length / 8)
    if (bytes !== undefined && bytes.length !== n) throw new RangeError(`bitfield of ${length} bits needs ${n} bytes, got ${bytes.length}`)
    this.bytes = bytes !== undefined ? new Uint8Array(bytes) : new Uint8Array(n)
  }

  static full (length: number): Bitfield {
    const b = new Bitfield(length)
    for (let i = 0; i < length; i++) b.set(i)
    return b
  }

  get (i: number): boolean {
    if (i < 0 || i >= this.length) return false
    return ((this.bytes[i >> 3] as number) & (0x80 >> (i & 7))) !== 0
  }

  set (i: number, v = true): void {
    if (i < 0 || i >= this.length) throw new RangeError(`bit ${i} out of range 0..${this.length - 1}`)
    const byte = this.bytes[i >> 3] as number
    this.bytes[i >> 3] = v ? byte | (0x80 >> (i & 7)) : byte & ~(0x80 >> (i & 7))
  }

  count (): number {
    let c = 0
    for (let i = 0; i < this.length; i++) if (this.get(i)) c++
    return c
  }

  isComplete (): boolean {
    return this.count() === this.length
  }

  isEmpty (): boolean {
    return this.bytes.every(b => b === 0)
  }

  clone (): Bitfield {
    return new Bitfield(this.length, this.bytes)
  }
}
