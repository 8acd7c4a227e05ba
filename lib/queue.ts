// Copyright the lbkit authors. MIT license.
/**
 * A bounded, blocking, FIFO-fair async queue.
 *
 * {@linkcode BlockingQueue} follows the shape of the async channel in the
 * Deno standard library: a fixed-size ring buffer where producers wait while
 * the buffer is full and consumers wait while it is empty. Nothing is ever
 * overwritten or dropped.
 *
 * @example Producer and consumer
 * ```ts
 * import { BlockingQueue } from "./queue.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 *
 * const queue = new BlockingQueue<number>(2);
 * const producer = (async () => {
 *   for (let i = 0; i < 5; i++) await queue.put(i);
 *   queue.close();
 * })();
 *
 * const received: number[] = [];
 * for await (const item of queue) received.push(item);
 * await producer;
 * deepStrictEqual(received, [0, 1, 2, 3, 4]);
 * ```
 *
 * @module
 */

/** Options accepted by the waiting operations of {@linkcode BlockingQueue}. */
export interface QueueWaitOptions {
  /**
   * Aborts the wait. An aborted wait rejects with `signal.reason` and gives
   * up its place in line; a signal that is already aborted rejects at once,
   * even when the operation could otherwise complete immediately.
   */
  signal?: AbortSignal;
}

/**
 * Error used to reject operations on a closed {@linkcode BlockingQueue}.
 *
 * @example Usage
 * ```ts
 * import { BlockingQueue, QueueClosedError } from "./queue.ts";
 * import { rejects } from "node:assert/strict";
 *
 * const queue = new BlockingQueue<string>(1);
 * queue.close();
 * await rejects(queue.put("late"), QueueClosedError);
 * ```
 */
export class QueueClosedError extends Error {
  /**
   * Constructs a new instance.
   *
   * @param message The error message.
   * @param options Standard error options, such as `cause`.
   */
  constructor(message = "Queue is closed", options?: ErrorOptions) {
    super(message, options);
    this.name = "QueueClosedError";
  }
}

/** Largest capacity a preallocated JavaScript array can hold. */
const MAX_CAPACITY = 2 ** 32 - 1;

/** Shared promise returned by {@linkcode BlockingQueue.put} when it does not block. */
const RESOLVED: Promise<void> = Promise.resolve();

/** Shared result of an iterator that has finished. */
const DONE: Promise<IteratorReturnResult<undefined>> = Promise.resolve({
  value: undefined,
  done: true,
});

function toResult<T>(value: T): IteratorYieldResult<T> {
  return { value, done: false };
}

function endOnClose(error: unknown): IteratorReturnResult<undefined> {
  if (error instanceof QueueClosedError) return { value: undefined, done: true };
  throw error;
}

/**
 * A pending `put` (`V = void`, `I = T`) or `take` (`V = T`, `I = undefined`).
 *
 * A waiter is a node of an intrusive doubly linked list, so an aborted wait
 * leaves its list in O(1) without scanning. It is also its own abort
 * listener (`handleEvent`), so waiting allocates no extra closure for it.
 */
class Waiter<V, I> implements EventListenerObject {
  prev: Waiter<V, I> | null = null;
  next: Waiter<V, I> | null = null;
  /** The list this waiter is queued in, or `null` once it has left it. */
  list: WaiterList<V, I> | null = null;
  readonly item: I;
  readonly signal: AbortSignal | undefined;
  #resolve: ((value: V) => void) | undefined;
  #reject: ((reason: unknown) => void) | undefined;

  constructor(item: I, signal: AbortSignal | undefined) {
    this.item = item;
    this.signal = signal;
  }

  /** Queues this waiter at the back of `list` and returns its promise. */
  wait(list: WaiterList<V, I>): Promise<V> {
    const promise = new Promise<V>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    list.push(this);
    this.signal?.addEventListener("abort", this);
    return promise;
  }

  /** Fulfils the wait. The waiter must already be out of its list. */
  settle(value: V): void {
    this.signal?.removeEventListener("abort", this);
    const resolve = this.#resolve as (value: V) => void;
    this.#resolve = this.#reject = undefined;
    resolve(value);
  }

  /** Rejects the wait. The waiter must already be out of its list. */
  fail(reason: unknown): void {
    this.signal?.removeEventListener("abort", this);
    const reject = this.#reject as (reason: unknown) => void;
    this.#resolve = this.#reject = undefined;
    reject(reason);
  }

  /** Abort listener: leave the line and reject with the abort reason. */
  handleEvent(): void {
    const list = this.list;
    if (list === null) return;
    list.remove(this);
    this.fail(this.signal?.reason);
  }
}

/** FIFO deque of waiters with O(1) push, shift and removal. */
class WaiterList<V, I> {
  #head: Waiter<V, I> | null = null;
  #tail: Waiter<V, I> | null = null;
  size = 0;

  push(waiter: Waiter<V, I>): void {
    const tail = this.#tail;
    waiter.list = this;
    waiter.prev = tail;
    waiter.next = null;
    if (tail === null) this.#head = waiter;
    else tail.next = waiter;
    this.#tail = waiter;
    this.size++;
  }

  /** Removes and returns the first waiter, or `null` when empty. */
  shift(): Waiter<V, I> | null {
    const waiter = this.#head;
    if (waiter !== null) this.remove(waiter);
    return waiter;
  }

  remove(waiter: Waiter<V, I>): void {
    const { prev, next } = waiter;
    if (prev === null) this.#head = next;
    else prev.next = next;
    if (next === null) this.#tail = prev;
    else next.prev = prev;
    waiter.prev = waiter.next = null;
    waiter.list = null;
    this.size--;
  }
}

/**
 * A bounded FIFO queue whose {@linkcode BlockingQueue.put} waits while the
 * queue is full and whose {@linkcode BlockingQueue.take} waits while it is
 * empty.
 *
 * Items live in a preallocated ring buffer of `capacity` slots. Waiters on
 * both sides are served first come, first served: the first waiting putter is
 * the first to get space, and the first waiting taker receives the next item,
 * handed to it directly without passing through the buffer. Operations that
 * do not need to wait complete synchronously (`tryPut`, `tryTake`) or return
 * an already settled promise (`put`, `take`).
 *
 * After {@linkcode BlockingQueue.close}, puts fail with
 * {@linkcode QueueClosedError}, while takes keep draining the items that are
 * still buffered and only then fail.
 *
 * Items are passed through promises, so a thenable item is adopted by
 * `take`, like any value returned from an async function; wrap thenables in
 * an object if they must be passed as they are.
 *
 * @typeParam T The type of the items in the queue.
 *
 * @example Bounded hand-off between a producer and a consumer
 * ```ts
 * import { BlockingQueue } from "./queue.ts";
 * import { strictEqual } from "node:assert/strict";
 *
 * const queue = new BlockingQueue<string>(1);
 * await queue.put("a"); // room available: resolves at once
 * const blocked = queue.put("b"); // full: waits for a taker
 * strictEqual(queue.waitingPutters, 1);
 *
 * strictEqual(await queue.take(), "a"); // "b" moves into the buffer
 * await blocked;
 * strictEqual(queue.tryTake(), "b");
 * ```
 *
 * @example Abandoning a wait
 * ```ts
 * import { BlockingQueue } from "./queue.ts";
 * import { rejects, strictEqual } from "node:assert/strict";
 *
 * const queue = new BlockingQueue<number>(4);
 * const controller = new AbortController();
 * const pending = queue.take({ signal: controller.signal });
 * controller.abort(new Error("gave up"));
 * await rejects(pending, { message: "gave up" });
 * strictEqual(queue.waitingTakers, 0);
 * ```
 */
export class BlockingQueue<T> implements AsyncIterable<T> {
  readonly #buffer: (T | undefined)[];
  readonly #capacity: number;
  /** Index of the oldest buffered item. */
  #head = 0;
  /** Number of buffered items. */
  #length = 0;
  #closed = false;
  /** Waiting takers; non-empty only while the buffer is empty. */
  readonly #takers = new WaiterList<T, undefined>();
  /** Waiting putters; non-empty only while the buffer is full. */
  readonly #putters = new WaiterList<void, T>();

  /**
   * Constructs a new instance.
   *
   * @param capacity The maximum number of buffered items, an integer of at
   * least 1. All slots are allocated up front.
   * @throws {RangeError} If `capacity` is not an integer from 1 to
   * 2 ** 32 - 1.
   */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_CAPACITY) {
      throw new RangeError(
        `Cannot construct BlockingQueue: capacity must be an integer from 1 to ${MAX_CAPACITY}, received ${capacity}`,
      );
    }
    this.#capacity = capacity;
    // Filled with `push` so the array stays packed rather than holey.
    const buffer: (T | undefined)[] = [];
    for (let i = 0; i < capacity; i++) buffer.push(undefined);
    this.#buffer = buffer;
  }

  /**
   * The number of items currently buffered.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(4);
   * queue.tryPut(1);
   * strictEqual(queue.size, 1);
   * ```
   *
   * @returns The number of buffered items.
   */
  get size(): number {
    return this.#length;
  }

  /**
   * The maximum number of items the queue buffers.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * strictEqual(new BlockingQueue<number>(8).capacity, 8);
   * ```
   *
   * @returns The capacity given to the constructor.
   */
  get capacity(): number {
    return this.#capacity;
  }

  /**
   * Whether {@linkcode BlockingQueue.close} has been called.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(1);
   * queue.close();
   * strictEqual(queue.closed, true);
   * ```
   *
   * @returns `true` once the queue is closed.
   */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The number of `put` calls waiting for space.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(1);
   * queue.tryPut(1);
   * const pending = queue.put(2);
   * strictEqual(queue.waitingPutters, 1);
   * queue.tryTake();
   * await pending;
   * ```
   *
   * @returns The number of waiting putters.
   */
  get waitingPutters(): number {
    return this.#putters.size;
  }

  /**
   * The number of `take` calls waiting for an item.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(1);
   * const pending = queue.take();
   * strictEqual(queue.waitingTakers, 1);
   * queue.tryPut(1);
   * strictEqual(await pending, 1);
   * ```
   *
   * @returns The number of waiting takers.
   */
  get waitingTakers(): number {
    return this.#takers.size;
  }

  /**
   * Adds an item, waiting while the queue is full.
   *
   * If a taker is waiting, the item goes straight to the one that has waited
   * longest. Otherwise it is buffered if there is room; if not, the call waits
   * behind any earlier putters. When the call does not wait, the returned
   * promise is already resolved.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(1);
   * await queue.put(1);
   * strictEqual(queue.size, 1);
   * ```
   *
   * @param item The item to add.
   * @param options Options for the wait, such as an abort signal.
   * @returns A promise that resolves once the item is in the queue or handed
   * to a taker. It rejects with {@linkcode QueueClosedError} if the queue is
   * or becomes closed before that, and with `signal.reason` if the wait is
   * aborted; either way the item is not added.
   */
  put(item: T, options?: QueueWaitOptions): Promise<void> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed) return Promise.reject(new QueueClosedError());
    if (this.#offer(item)) return RESOLVED;
    return new Waiter<void, T>(item, signal).wait(this.#putters);
  }

  /**
   * Adds an item if that can be done without waiting.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(1);
   * strictEqual(queue.tryPut(1), true);
   * strictEqual(queue.tryPut(2), false);
   * ```
   *
   * @param item The item to add.
   * @returns `true` if the item was buffered or handed to a waiting taker,
   * `false` if the queue is full.
   * @throws {QueueClosedError} If the queue is closed.
   */
  tryPut(item: T): boolean {
    if (this.#closed) throw new QueueClosedError();
    return this.#offer(item);
  }

  /**
   * Removes and returns the oldest item, waiting while the queue is empty.
   *
   * Waiting takers are served in the order they called `take`. Items still
   * buffered when the queue is closed are returned before takes start to
   * fail.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<string>(2);
   * const next = queue.take();
   * await queue.put("hello");
   * strictEqual(await next, "hello");
   * ```
   *
   * @param options Options for the wait, such as an abort signal.
   * @returns A promise for the item. It rejects with
   * {@linkcode QueueClosedError} once the queue is closed and empty, and with
   * `signal.reason` if the wait is aborted; either way no item is consumed.
   */
  take(options?: QueueWaitOptions): Promise<T> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#length > 0) return Promise.resolve(this.#dequeue());
    if (this.#closed) return Promise.reject(new QueueClosedError());
    return new Waiter<T, undefined>(undefined, signal).wait(this.#takers);
  }

  /**
   * Removes and returns the oldest item if there is one.
   *
   * If putters are waiting, the first of them moves its item into the freed
   * slot and its `put` resolves. After the queue is closed, `tryTake` keeps
   * returning the remaining items.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(2);
   * queue.tryPut(7);
   * strictEqual(queue.tryTake(), 7);
   * strictEqual(queue.tryTake(), undefined);
   * ```
   *
   * @returns The oldest item, or `undefined` if the queue is empty (which
   * cannot be told apart from a buffered `undefined`; check
   * {@linkcode BlockingQueue.size} first if `T` includes `undefined`).
   */
  tryTake(): T | undefined {
    return this.#length > 0 ? this.#dequeue() : undefined;
  }

  /**
   * Closes the queue. Calling it again has no effect.
   *
   * Every waiting taker and putter is rejected with
   * {@linkcode QueueClosedError}; the items of rejected putters are not
   * added. Further puts fail, while buffered items can still be taken.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue, QueueClosedError } from "./queue.ts";
   * import { rejects, strictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(2);
   * queue.tryPut(1);
   * queue.close();
   * strictEqual(await queue.take(), 1);
   * await rejects(queue.take(), QueueClosedError);
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let taker = this.#takers.shift(); taker !== null; taker = this.#takers.shift()) {
      taker.fail(new QueueClosedError());
    }
    for (let putter = this.#putters.shift(); putter !== null; putter = this.#putters.shift()) {
      putter.fail(new QueueClosedError());
    }
  }

  /**
   * Yields items in order until the queue is closed and drained.
   *
   * Each `next()` call is a {@linkcode BlockingQueue.take}, so several
   * iterators (or overlapping `next()` calls) share the items between them,
   * served in call order. Leaving a `for await` loop early leaves the
   * remaining items in the queue.
   *
   * @example Usage
   * ```ts
   * import { BlockingQueue } from "./queue.ts";
   * import { deepStrictEqual } from "node:assert/strict";
   *
   * const queue = new BlockingQueue<number>(3);
   * queue.tryPut(1);
   * queue.tryPut(2);
   * queue.close();
   * deepStrictEqual(await Array.fromAsync(queue), [1, 2]);
   * ```
   *
   * @returns An async iterator over the items of the queue.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<T, undefined, undefined> {
    // Hand-written rather than an async generator: a buffered item costs one
    // settled promise instead of a round trip through generator machinery.
    const iterator: AsyncIterableIterator<T, undefined, undefined> = {
      next: (): Promise<IteratorResult<T, undefined>> => {
        if (this.#length > 0) return Promise.resolve({ value: this.#dequeue(), done: false });
        if (this.#closed) return DONE;
        return this.take().then(toResult, endOnClose);
      },
      [Symbol.asyncIterator]: (): AsyncIterableIterator<T, undefined, undefined> => iterator,
    };
    return iterator;
  }

  /** Hands `item` to the first waiting taker or buffers it; `false` if full. */
  #offer(item: T): boolean {
    const taker = this.#takers.shift();
    if (taker !== null) {
      taker.settle(item);
      return true;
    }
    const length = this.#length;
    const capacity = this.#capacity;
    if (length === capacity) return false;
    let tail = this.#head + length;
    if (tail >= capacity) tail -= capacity;
    this.#buffer[tail] = item;
    this.#length = length + 1;
    return true;
  }

  /**
   * Removes the oldest buffered item (the buffer must not be empty) and lets
   * the first waiting putter, if any, move its item into the freed slot.
   */
  #dequeue(): T {
    const buffer = this.#buffer;
    const head = this.#head;
    const item = buffer[head] as T;
    const putter = this.#putters.shift();
    if (putter !== null) {
      // The buffer was full, so the freed head slot becomes the new tail.
      buffer[head] = putter.item;
      this.#head = head + 1 === this.#capacity ? 0 : head + 1;
      putter.settle(undefined);
    } else {
      buffer[head] = undefined;
      this.#head = head + 1 === this.#capacity ? 0 : head + 1;
      this.#length--;
    }
    return item;
  }
}
