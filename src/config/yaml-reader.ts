// A strict, position-keeping reader over a parsed YAML document. The config schema walks the
// document's nodes through it (not a plain JS object), so every problem is reported with the
// line and column of the value at fault, every problem is collected instead of the first one
// thrown, and every key the schema does not know is an error with a "did you mean" hint.
//
// Conventions: a key that is absent reads as `undefined`; a key written with no value
// (`interface:`) is an error ("is empty"), because leaving a value out is never the way to ask
// for a default here: removing the key is.

import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node, type YAMLMap } from 'yaml';
import type { ConfigIssue } from './config-errors.js';

/** A value and the node it was read from, for reporting problems found later. */
export interface Located<T> {
  readonly value: T;
  readonly node: Node;
}

/** The keys a map may hold. `hints` explain keys that are deliberately not accepted. */
export interface MapSpec {
  readonly keys: readonly string[];
  readonly hints?: Readonly<Record<string, string>>;
}

interface Field {
  readonly keyNode: Node;
  /** The value as written (an alias stays an alias, for its position); null for `key:` with
   * no value node at all. */
  readonly valueNode: Node | null;
}

/** Largest edit distance for a "did you mean" suggestion on an unknown key. */
const suggestionDistanceMax = 3;

export class YamlReader {
  readonly issues: ConfigIssue[] = [];
  private readonly file: string;
  private readonly doc: Document.Parsed;
  private readonly lineCounter: LineCounter;

  constructor(options: { file: string; doc: Document.Parsed; lineCounter: LineCounter }) {
    this.file = options.file;
    this.doc = options.doc;
    this.lineCounter = options.lineCounter;
  }

  /** Records a problem at a node (its first character) or at a source offset. */
  report(options: { at: Node | number | null; path: string; message: string }): void {
    const offset = typeof options.at === 'number' ? options.at : (options.at?.range?.[0] ?? 0);
    const { line, col } = this.lineCounter.linePos(offset);
    this.issues.push({ file: this.file, line, col, path: options.path, message: options.message });
  }

  /** The node an alias points at; other nodes unchanged. */
  resolve(node: Node | null): Node | null {
    if (node !== null && isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return node;
  }

  /** Reads a map, reporting a non-map value and every key not in `spec`. */
  map(node: Node | null, path: string, spec: MapSpec): MapView | null {
    const resolved = this.resolve(node);
    if (resolved === null || !isMap(resolved)) {
      const what = path === '' ? 'the top level must be' : 'must be';
      this.report({ at: node, path, message: `${what} a map of keys (${spec.keys.join(', ')}), got ${describeNode(resolved)}` });
      return null;
    }
    const fields = new Map<string, Field>();
    for (const pair of (resolved as YAMLMap<unknown, unknown>).items) {
      const keyNode = this.resolve(pair.key as Node | null);
      const valueNode = (pair.value as Node | null) ?? null;
      const keyPosition = (pair.key as Node | null) ?? valueNode ?? node;
      if (keyNode === null || !isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number')) {
        this.report({ at: keyPosition, path, message: `keys must be plain words, got ${describeNode(keyNode)}` });
        continue;
      }
      const key = String(keyNode.value);
      const keyPath = joinPath(path, key);
      if (!spec.keys.includes(key)) {
        this.report({ at: keyPosition, path: keyPath, message: unknownKeyMessage({ key, spec }) });
        continue;
      }
      // Duplicate keys are already a YAML error (uniqueKeys); the last one wins here.
      fields.set(key, { keyNode: keyPosition as Node, valueNode });
    }
    return new MapView({ reader: this, node: node ?? resolved, path, fields });
  }
}

/** The known keys of one map, read one by one; each reader reports its own problems. */
export class MapView {
  readonly node: Node;
  readonly path: string;
  private readonly reader: YamlReader;
  private readonly fields: ReadonlyMap<string, Field>;

  constructor(options: { reader: YamlReader; node: Node; path: string; fields: ReadonlyMap<string, Field> }) {
    this.reader = options.reader;
    this.node = options.node;
    this.path = options.path;
    this.fields = options.fields;
  }

  has(key: string): boolean {
    return this.fields.has(key);
  }

  keyPath(key: string): string {
    return joinPath(this.path, key);
  }

  /** Where a key's value is written (the key itself when there is no value node). */
  positionOf(key: string): Node {
    const field = this.fields.get(key);
    return field?.valueNode ?? field?.keyNode ?? this.node;
  }

  /** Reports a required key that is absent, at this map. */
  missing(key: string, hint?: string): void {
    this.reader.report({
      at: this.node,
      path: this.keyPath(key),
      message: hint === undefined ? 'is required' : `is required; ${hint}`,
    });
  }

  string(key: string, options: { required?: boolean; hint?: string } = {}): Located<string> | undefined {
    const scalar = this.scalar(key, options);
    if (scalar === undefined) return undefined;
    if (typeof scalar.value !== 'string') {
      const quoteHint =
        typeof scalar.value === 'number' || typeof scalar.value === 'boolean' ? `; quote it: "${String(scalar.value)}"` : '';
      this.reportType({ key, expected: 'a string', got: scalar.node, hint: quoteHint });
      return undefined;
    }
    return { value: scalar.value, node: scalar.node };
  }

  integer(key: string, options: { required?: boolean } = {}): Located<number> | undefined {
    const scalar = this.scalar(key, options);
    if (scalar === undefined) return undefined;
    if (typeof scalar.value !== 'number' || !Number.isSafeInteger(scalar.value)) {
      this.reportType({ key, expected: 'a whole number', got: scalar.node, hint: '' });
      return undefined;
    }
    return { value: scalar.value, node: scalar.node };
  }

  boolean(key: string, options: { required?: boolean } = {}): Located<boolean> | undefined {
    const scalar = this.scalar(key, options);
    if (scalar === undefined) return undefined;
    if (typeof scalar.value !== 'boolean') {
      this.reportType({ key, expected: 'true or false', got: scalar.node, hint: '' });
      return undefined;
    }
    return { value: scalar.value, node: scalar.node };
  }

  map(key: string, spec: MapSpec, options: { required?: boolean; hint?: string } = {}): MapView | undefined {
    const field = this.present(key, options);
    if (field === undefined) return undefined;
    return this.reader.map(field.valueNode ?? field.keyNode, this.keyPath(key), spec) ?? undefined;
  }

  /** A list: the items as written (aliases unresolved), or undefined after reporting. */
  list(key: string, options: { required?: boolean; hint?: string } = {}): Located<(Node | null)[]> | undefined {
    const field = this.present(key, options);
    if (field === undefined) return undefined;
    const node = field.valueNode ?? field.keyNode;
    const resolved = this.reader.resolve(field.valueNode);
    if (resolved === null || !isSeq(resolved)) {
      this.reportType({ key, expected: 'a list', got: field.valueNode, hint: '' });
      return undefined;
    }
    return { value: resolved.items.map((item) => (item as Node | null) ?? null), node };
  }

  private present(key: string, options: { required?: boolean; hint?: string }): Field | undefined {
    const field = this.fields.get(key);
    if (field === undefined) {
      if (options.required === true) this.missing(key, options.hint);
      return undefined;
    }
    const value = this.reader.resolve(field.valueNode);
    if (value === null || (isScalar(value) && value.value === null)) {
      const hint = options.required === true ? (options.hint ?? 'give a value') : 'give a value, or remove the key to use the default';
      this.reader.report({ at: field.valueNode ?? field.keyNode, path: this.keyPath(key), message: `is empty; ${hint}` });
      return undefined;
    }
    return field;
  }

  private scalar(key: string, options: { required?: boolean; hint?: string }): { value: unknown; node: Node } | undefined {
    const field = this.present(key, options);
    if (field === undefined) return undefined;
    const node = field.valueNode ?? field.keyNode;
    const value = this.reader.resolve(field.valueNode);
    if (value === null || !isScalar(value)) {
      this.reader.report({ at: node, path: this.keyPath(key), message: `must be a single value, got ${describeNode(value)}` });
      return undefined;
    }
    return { value: value.value, node };
  }

  private reportType(options: { key: string; expected: string; got: Node | null; hint: string }): void {
    const { key, expected, got, hint } = options;
    this.reader.report({
      at: got ?? this.positionOf(key),
      path: this.keyPath(key),
      message: `must be ${expected}, got ${describeNode(this.reader.resolve(got))}${hint}`,
    });
  }
}

export function joinPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

export function indexPath(path: string, index: number): string {
  return `${path}[${index}]`;
}

/** How a value reads in a message: `"50" (a string)`, `1.5`, `a list`. */
export function describeNode(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const value: unknown = node.value;
    if (value === null) return 'an empty value';
    if (typeof value === 'string') {
      const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
      return `${JSON.stringify(shown)} (a string)`;
    }
    if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  }
  return 'an unsupported value';
}

function unknownKeyMessage(options: { key: string; spec: MapSpec }): string {
  const { key, spec } = options;
  const hint = spec.hints?.[key];
  if (hint !== undefined) return `unknown key: ${hint}`;
  const suggestion = closestKey({ key, keys: spec.keys });
  const known = `known keys here: ${spec.keys.join(', ')}`;
  return suggestion === null ? `unknown key (${known})` : `unknown key; did you mean ${suggestion}? (${known})`;
}

function closestKey(options: { key: string; keys: readonly string[] }): string | null {
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of options.keys) {
    const distance =
      candidate.toLowerCase() === options.key.toLowerCase() ? 0 : editDistance(candidate.toLowerCase(), options.key.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.min(suggestionDistanceMax, Math.floor(options.key.length / 2)) ? best : null;
}

/** Levenshtein distance; keys are short, so the quadratic table is fine. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
