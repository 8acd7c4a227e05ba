/**
 * The balancer's requests in flight, by LB id: a table indexed by the id's
 * low bits. Ids are handed out in increasing order (wrapping at 2^32, never
 * 0) and live only for a request's round trip, so the live ids span a
 * window and a table a little larger than the window holds them without
 * collisions; it doubles when one happens. A `Map` did the same with an
 * insert, a lookup and a delete per request, a tenth of the balancer's time.
 *
 * @module
 */

/** What the table holds: an id, and a deadline that grows with the id. */
export interface PendingItem {
  /** The LB id: handed out in increasing order, wrapping at 2^32, never 0. */
  lbId: number;
  /** When it expires (ms); later ids never have earlier deadlines. */
  deadline: number;
}

const INITIAL = 1024;

/** Steps an id forward as the balancer hands them out. */
function nextId(id: number): number {
  return (id + 1) >>> 0 || 1;
}

/** Signed distance from id `a` to id `b` on the 32-bit circle. */
function distance(a: number, b: number): number {
  return (b - a) | 0;
}

/** In-flight items by id, swept for expiry in id order. */
export class PendingTable<T extends PendingItem> {
  #slots: (T | undefined)[] = new Array<T | undefined>(INITIAL).fill(undefined);
  #mask = INITIAL - 1;
  #size = 0;
  /** No live id is older than this (it only moves past ids seen empty). */
  #oldest = 0;

  /** Items held. */
  get size(): number {
    return this.#size;
  }

  /** The item with this id, if held. */
  get(id: number): T | undefined {
    const p = this.#slots[id & this.#mask];
    return p !== undefined && p.lbId === id ? p : undefined;
  }

  /** Holds `p` under its id (again, after a retry, is fine). */
  set(p: T): void {
    let q = this.#slots[p.lbId & this.#mask];
    while (q !== undefined && q !== p) {
      // Another live id shares the slot: the window outgrew the table.
      this.#grow();
      q = this.#slots[p.lbId & this.#mask];
    }
    if (q === undefined) this.#size++;
    this.#slots[p.lbId & this.#mask] = p;
    if (this.#size === 1 || distance(this.#oldest, p.lbId) < 0) this.#oldest = p.lbId;
  }

  /** Drops `p` if it is held; returns whether it was. */
  delete(p: T): boolean {
    const i = p.lbId & this.#mask;
    if (this.#slots[i] !== p) return false;
    this.#slots[i] = undefined;
    this.#size--;
    return true;
  }

  /** Every item held (any order). */
  *values(): IterableIterator<T> {
    for (const p of this.#slots) if (p !== undefined) yield p;
  }

  /**
   * Calls `onExpired` for each item whose deadline is not after `now`,
   * oldest id first, stopping at the first one still in time (deadlines grow
   * with ids). `onExpired` must delete the item.
   */
  expire(now: number, onExpired: (p: T) => void): void {
    while (this.#size > 0) {
      const p = this.#slots[this.#oldest & this.#mask];
      if (p === undefined || p.lbId !== this.#oldest) {
        this.#oldest = nextId(this.#oldest);
        continue;
      }
      if (p.deadline > now) return;
      onExpired(p);
      if (this.#slots[this.#oldest & this.#mask] === p) {
        throw new TypeError("onExpired must delete the item it is given");
      }
    }
  }

  #grow(): void {
    let size = 2 * this.#slots.length;
    for (;;) {
      const slots = new Array<T | undefined>(size).fill(undefined);
      const mask = size - 1;
      let clash = false;
      for (const p of this.#slots) {
        if (p === undefined) continue;
        if (slots[p.lbId & mask] !== undefined) {
          clash = true;
          break;
        }
        slots[p.lbId & mask] = p;
      }
      if (!clash) {
        this.#slots = slots;
        this.#mask = mask;
        return;
      }
      size *= 2;
    }
  }
}
