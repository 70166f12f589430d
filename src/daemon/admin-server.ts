// The admin API on loopback HTTP: GET /healthz, /readyz, /status, /metrics,
// POST /leadership/transfer and POST /members. It owns only HTTP: every answer comes from the AdminView it is
// given. Bounded: small request bodies, short timeouts, a cap on connections.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const adminRequestBodyBytesMax = 4096;
export const adminRequestTimeoutMs = 5000;
export const adminConnectionsMax = 64;

export interface Verdict {
  readonly ok: boolean;
  readonly reason: string;
}

export interface AdminView {
  status(): unknown;
  health(): Verdict;
  readiness(): Verdict;
  metrics(): Promise<{ contentType: string; body: string }>;
  transferLeadership(to: string | undefined): Promise<{ ok: boolean; code?: string; message?: string; transferee?: string }>;
  changeMembers(request: { action: 'add' | 'remove'; id: string; address?: string }): Promise<{ ok: boolean; code?: string; message?: string }>;
}

export class AdminServer {
  private server: Server | null = null;

  constructor(private readonly options: { host: string; port: number; view: AdminView; log: (level: 'warn' | 'info', msg: string, fields?: Record<string, unknown>) => void }) {}

  async start(): Promise<{ host: string; port: number }> {
    if (this.server) return this.address();
    const server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        this.options.log('warn', 'admin request failed', { err: String(error), url: request.url });
        if (!response.headersSent) sendJson(response, 500, { error: 'internal error' });
        else response.destroy();
      });
    });
    server.maxConnections = adminConnectionsMax;
    server.requestTimeout = adminRequestTimeoutMs;
    server.headersTimeout = adminRequestTimeoutMs;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return this.address();
  }

  address(): { host: string; port: number } {
    const address = this.server?.address() as AddressInfo | null;
    return { host: this.options.host, port: address?.port ?? this.options.port };
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://admin');
    const route = `${request.method ?? 'GET'} ${url.pathname}`;
    const view = this.options.view;
    switch (route) {
      case 'GET /healthz':
        return sendVerdict(response, view.health());
      case 'GET /readyz':
        return sendVerdict(response, view.readiness());
      case 'GET /status':
        return sendJson(response, 200, view.status());
      case 'GET /metrics': {
        const metrics = await view.metrics();
        response.writeHead(200, { 'content-type': metrics.contentType });
        response.end(metrics.body);
        return;
      }
      case 'POST /leadership/transfer': {
        const body = await readBody(request);
        let to: string | undefined = url.searchParams.get('to') ?? undefined;
        if (body.length > 0) {
          const parsed = parseJson(body);
          if (parsed === undefined || (parsed.to !== undefined && typeof parsed.to !== 'string')) {
            return sendJson(response, 400, { ok: false, code: 'RAFTVIP_BAD_REQUEST', message: 'body must be JSON like {"to": "cp2"}' });
          }
          to = (parsed.to as string | undefined) ?? to;
        }
        const result = await view.transferLeadership(to);
        return sendJson(response, result.ok ? 200 : result.code === 'RAFTVIP_NOT_LEADER' ? 409 : 400, result);
      }
      case 'POST /members': {
        const parsed = parseJson(await readBody(request));
        const action = parsed?.action;
        const id = parsed?.id;
        const address = parsed?.address;
        if ((action !== 'add' && action !== 'remove') || typeof id !== 'string' || (address !== undefined && typeof address !== 'string')) {
          return sendJson(response, 400, {
            ok: false,
            code: 'RAFTVIP_BAD_REQUEST',
            message: 'body must be JSON like {"action": "add", "id": "cp4", "address": "10.0.0.14:7480"}',
          });
        }
        const result = await view.changeMembers({ action, id, ...(address !== undefined ? { address } : {}) });
        return sendJson(response, result.ok ? 200 : result.code === 'RAFTVIP_NOT_LEADER' ? 409 : 400, result);
      }
      default:
        if (['/healthz', '/readyz', '/status', '/metrics', '/leadership/transfer', '/members'].includes(url.pathname)) {
          return sendJson(response, 405, { error: `method ${request.method ?? ''} not allowed on ${url.pathname}` });
        }
        return sendJson(response, 404, { error: `no such endpoint: ${url.pathname}` });
    }
  }
}

function sendVerdict(response: ServerResponse, verdict: Verdict): void {
  response.writeHead(verdict.ok ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' });
  response.end(`${verdict.ok ? 'ok' : 'not ok'}: ${verdict.reason}\n`);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(`${JSON.stringify(body, null, 2)}\n`);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > adminRequestBodyBytesMax) throw new Error(`request body over ${adminRequestBodyBytesMax} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
