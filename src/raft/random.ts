// Randomness for the Raft core, injected so that a seed replays a whole cluster exactly.
// The core never calls Math.random: the simulator passes a seeded generator, the daemon one
// seeded from the operating system.

export interface RandomSource {
  /** A uniformly distributed integer in [0, maxExclusive). */
  nextInt(maxExclusive: number): number;
  /** A uniformly distributed float in [0, 1). */
  nextFloat(): number;
}

/** sfc32, a small fast counter-based generator with a 128-bit state: good statistical quality
 * for simulation, and trivially reproducible from a 32-bit seed. Not for secrets. */
export class SeededRandom implements RandomSource {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.next32();
  }

  next32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  nextFloat(): number {
    return this.next32() / 4294967296;
  }

  nextInt(maxExclusive: number): number {
    if (maxExclusive <= 0) return 0;
    return Math.floor(this.nextFloat() * maxExclusive);
  }

  /** A new independent generator derived from this one (one per simulated node). */
  fork(): SeededRandom {
    return new SeededRandom(this.next32());
  }
}
