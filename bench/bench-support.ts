// What the lab benchmarks (bench:failover, bench:lb, bench:compare) share: reading `--name VALUE`
// options and nearest-rank quantiles of sorted samples.

/** The value after `--name` on the command line, or undefined. */
export function option(name: string): string | undefined {
  const args = process.argv.slice(2);
  const index = args.indexOf(name);
  return index === -1 ? undefined : args[index + 1];
}

/** The nearest-rank q-quantile (0 < q <= 1) of ascending `sorted`; NaN when it is empty. */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}
