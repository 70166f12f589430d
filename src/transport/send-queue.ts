// The bounded queue of messages waiting for one peer's connection. Pure data structure; the
// peer link drains it when its socket can take more.
//
// When the queue is full, the oldest heartbeat or append (request or response) goes first:
// they are superseded by later ones (the leader resends log entries from its progress state,
// and a lease only counts the latest round anyway). Votes, pre-votes, snapshots and
// timeout-now are kept as long as there is anything else to drop; only a queue full of them
// loses its oldest.

import type { Message, MessageType } from '../raft/types.js';

const supersededTypes: ReadonlySet<MessageType> = new Set<MessageType>([
  'heartbeat',
  'heartbeat-response',
  'append',
  'append-response',
]);

/** True for the message types that are dropped first when a queue overflows. */
export function isSuperseded(message: Message): boolean {
  return supersededTypes.has(message.type);
}

export class SendQueue {
  private readonly items: Message[] = [];
  private readonly messagesMax: number;

  constructor(messagesMax: number) {
    if (!Number.isSafeInteger(messagesMax) || messagesMax < 1) throw new RangeError(`queue length ${messagesMax} must be a positive integer`);
    this.messagesMax = messagesMax;
  }

  get length(): number {
    return this.items.length;
  }

  /** Appends `message`; returns the message dropped to make room, or null. */
  push(message: Message): Message | null {
    let dropped: Message | null = null;
    if (this.items.length >= this.messagesMax) {
      const victim = this.items.findIndex(isSuperseded);
      dropped = this.items.splice(victim === -1 ? 0 : victim, 1)[0] ?? null;
    }
    this.items.push(message);
    return dropped;
  }

  /** Removes and returns the oldest message. */
  shift(): Message | undefined {
    return this.items.shift();
  }

  /** Empties the queue; returns how many messages it held. */
  clear(): number {
    const count = this.items.length;
    this.items.length = 0;
    return count;
  }

  /** The queued messages, oldest first (for tests and diagnostics). */
  snapshot(): readonly Message[] {
    return [...this.items];
  }
}
