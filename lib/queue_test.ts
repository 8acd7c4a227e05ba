// Copyright the lbkit authors. MIT license.
import { deepEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import fc from "fast-check";
import { BlockingQueue, QueueClosedError } from "./queue.ts";

/** Lets every pending promise reaction run (no timers). */
async function flush(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

type Outcome<T> =
  | { state: "pending" }
  | { state: "fulfilled"; value: T }
  | { state: "rejected"; reason: unknown };

/** Records how a promise settles, and marks its rejection as handled. */
function track<T>(
  promise: Promise<T>,
): { readonly outcome: Outcome<T>; readonly promise: Promise<T> } {
  const tracked: { outcome: Outcome<T>; promise: Promise<T> } = {
    outcome: { state: "pending" },
    promise,
  };
  promise.then(
    (value) => tracked.outcome = { state: "fulfilled", value },
    (reason) => tracked.outcome = { state: "rejected", reason },
  );
  return tracked;
}

/**
 * Collects items by async iteration, failing instead of looping forever if
 * the queue yields more than `limit` items.
 */
async function collect<T>(queue: AsyncIterable<T>, limit: number): Promise<T[]> {
  const items: T[] = [];
  for await (const item of queue) {
    items.push(item);
    if (items.length > limit) throw new Error(`iteration yielded more than ${limit} items`);
  }
  return items;
}

/** Small deterministic PRNG (mulberry32) for reproducible schedules. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An AbortSignal that counts its currently registered abort listeners. */
function countingSignal(): { controller: AbortController; listeners: () => number } {
  const controller = new AbortController();
  const signal = controller.signal;
  const active = new Set<EventListenerOrEventListenerObject>();
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void => {
    if (type === "abort") active.add(listener);
    add(type, listener, options);
  };
  signal.removeEventListener = (
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void => {
    if (type === "abort") active.delete(listener);
    remove(type, listener, options);
  };
  return { controller, listeners: () => active.size };
}

Deno.test("BlockingQueue constructor", async (t) => {
  await t.step("accepts integer capacities >= 1", () => {
    strictEqual(new BlockingQueue<number>(1).capacity, 1);
    strictEqual(new BlockingQueue<number>(1024).capacity, 1024);
    const queue = new BlockingQueue<number>(3);
    strictEqual(queue.size, 0);
    strictEqual(queue.closed, false);
    strictEqual(queue.waitingPutters, 0);
    strictEqual(queue.waitingTakers, 0);
  });

  await t.step("throws RangeError for invalid capacities", () => {
    for (const capacity of [0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 32]) {
      throws(() => new BlockingQueue<number>(capacity), RangeError, `capacity ${capacity}`);
    }
  });
});

Deno.test("BlockingQueue QueueClosedError", () => {
  const error = new QueueClosedError();
  ok(error instanceof Error);
  strictEqual(error.name, "QueueClosedError");
  strictEqual(error.message, "Queue is closed");
  strictEqual(new QueueClosedError("custom", { cause: 1 }).cause, 1);
});

Deno.test("BlockingQueue FIFO order", async (t) => {
  await t.step("tryPut/tryTake across ring wrap-around", () => {
    const queue = new BlockingQueue<number>(4);
    const out: number[] = [];
    let next = 0;
    for (let round = 0; round < 10; round++) {
      // Uneven batches force the head index to wrap at different offsets.
      const batch = (round % 4) + 1;
      for (let i = 0; i < batch; i++) ok(queue.tryPut(next++));
      for (let i = 0; i < batch; i++) out.push(queue.tryTake() as number);
    }
    deepEqual(out, Array.from({ length: next }, (_, i) => i));
    strictEqual(queue.tryTake(), undefined);
  });

  await t.step("put/take", async () => {
    const queue = new BlockingQueue<string>(3);
    await queue.put("a");
    await queue.put("b");
    await queue.put("c");
    strictEqual(queue.size, 3);
    strictEqual(await queue.take(), "a");
    await queue.put("d");
    deepEqual([await queue.take(), await queue.take(), await queue.take()], ["b", "c", "d"]);
    strictEqual(queue.size, 0);
  });

  await t.step("tryPut returns false when full and keeps contents", () => {
    const queue = new BlockingQueue<number>(2);
    ok(queue.tryPut(1));
    ok(queue.tryPut(2));
    strictEqual(queue.tryPut(3), false);
    strictEqual(queue.size, 2);
    strictEqual(queue.tryTake(), 1);
    strictEqual(queue.tryTake(), 2);
    strictEqual(queue.tryTake(), undefined);
  });

  await t.step("put with room resolves without waiting", async () => {
    const queue = new BlockingQueue<number>(2);
    const tracked = track(queue.put(1));
    await flush(1);
    strictEqual(tracked.outcome.state, "fulfilled");
    strictEqual(queue.waitingPutters, 0);
  });
});

Deno.test("BlockingQueue waiting takers", async (t) => {
  await t.step("items go directly to waiting takers in FIFO order", async () => {
    const queue = new BlockingQueue<number>(1);
    const takers = [track(queue.take()), track(queue.take()), track(queue.take())];
    strictEqual(queue.waitingTakers, 3);
    ok(queue.tryPut(10));
    // Hand-off: the item never occupies the buffer.
    strictEqual(queue.size, 0);
    strictEqual(queue.waitingTakers, 2);
    await queue.put(20);
    await queue.put(30);
    strictEqual(queue.waitingTakers, 0);
    strictEqual(queue.size, 0);
    await flush();
    deepEqual(
      takers.map((taker) => taker.outcome),
      [10, 20, 30].map((value) => ({ state: "fulfilled", value })),
    );
  });
});

Deno.test("BlockingQueue producers block when full and resume in FIFO order", async (t) => {
  await t.step("take releases putters one at a time, oldest first", async () => {
    const queue = new BlockingQueue<string>(2);
    await queue.put("a");
    await queue.put("b");
    const putters = ["p1", "p2", "p3"].map((item) => track(queue.put(item)));
    await flush();
    strictEqual(queue.waitingPutters, 3);
    ok(putters.every((p) => p.outcome.state === "pending"));
    strictEqual(queue.size, 2);

    strictEqual(await queue.take(), "a");
    await flush();
    deepEqual(putters.map((p) => p.outcome.state), ["fulfilled", "pending", "pending"]);
    strictEqual(queue.size, 2);
    strictEqual(queue.waitingPutters, 2);

    strictEqual(queue.tryTake(), "b");
    await flush();
    deepEqual(putters.map((p) => p.outcome.state), ["fulfilled", "fulfilled", "pending"]);

    const rest = [await queue.take(), await queue.take(), await queue.take()];
    deepEqual(rest, ["p1", "p2", "p3"]);
    strictEqual(queue.size, 0);
    await flush();
    ok(putters.every((p) => p.outcome.state === "fulfilled"));
    strictEqual(queue.waitingPutters, 0);
  });

  await t.step("a put after waiting putters waits behind them", async () => {
    const queue = new BlockingQueue<number>(1);
    ok(queue.tryPut(0));
    const first = track(queue.put(1));
    strictEqual(queue.tryPut(99), false);
    const second = track(queue.put(2));
    strictEqual(queue.tryTake(), 0);
    strictEqual(queue.tryTake(), 1);
    strictEqual(queue.tryTake(), 2);
    await flush();
    strictEqual(first.outcome.state, "fulfilled");
    strictEqual(second.outcome.state, "fulfilled");
  });
});

Deno.test("BlockingQueue capacity bound holds under random schedules", async (t) => {
  for (const seed of [1, 2, 3, 42, 1337]) {
    await t.step(`seed ${seed}`, async () => {
      const random = mulberry32(seed);
      const capacity = 1 + Math.floor(random() * 4);
      const queue = new BlockingQueue<number>(capacity);
      const itemsPerProducer = 200;
      const producers = 3;
      const consumers = 3;
      let maxSize = 0;
      const check = (): void => {
        maxSize = Math.max(maxSize, queue.size);
        ok(queue.size <= queue.capacity, `size ${queue.size} > capacity ${queue.capacity}`);
        ok(queue.size >= 0);
        // A waiting taker means an empty buffer; a waiting putter a full one.
        if (queue.waitingTakers > 0) strictEqual(queue.size, 0);
        if (queue.waitingPutters > 0) strictEqual(queue.size, queue.capacity);
      };
      const pause = async (): Promise<void> => {
        const rounds = Math.floor(random() * 4);
        for (let i = 0; i < rounds; i++) {
          await Promise.resolve();
          check();
        }
      };
      const received: number[] = [];
      const produce = async (id: number): Promise<void> => {
        for (let i = 0; i < itemsPerProducer; i++) {
          await pause();
          const item = id * itemsPerProducer + i;
          if (random() < 0.3 && queue.tryPut(item)) {
            check();
            continue;
          }
          await queue.put(item);
          check();
        }
      };
      const consume = async (): Promise<void> => {
        while (true) {
          ok(received.length <= producers * itemsPerProducer, "more items taken than put");
          await pause();
          const sync = random() < 0.3 && queue.size > 0;
          if (sync) {
            received.push(queue.tryTake() as number);
            check();
            continue;
          }
          try {
            received.push(await queue.take());
          } catch (error) {
            ok(error instanceof QueueClosedError);
            return;
          }
          check();
        }
      };
      const consuming = Array.from({ length: consumers }, () => consume());
      await Promise.all(Array.from({ length: producers }, (_, id) => produce(id)));
      queue.close();
      await Promise.all(consuming);
      check();
      strictEqual(maxSize, capacity, "the schedule should fill the queue at some point");
      deepEqual(
        received.toSorted((a, b) => a - b),
        Array.from({ length: producers * itemsPerProducer }, (_, i) => i),
      );
    });
  }
});

Deno.test("BlockingQueue many producers and consumers", async (t) => {
  for (const capacity of [1, 16, 1024]) {
    await t.step(`8 producers, 8 consumers, 10,000 items, capacity ${capacity}`, async () => {
      const queue = new BlockingQueue<number>(capacity);
      const producers = 8;
      const consumers = 8;
      const total = 10_000;
      const perProducer = total / producers;
      const takeOrder: number[] = [];
      const perConsumer: number[][] = [];

      const produce = async (id: number): Promise<void> => {
        for (let i = 0; i < perProducer; i++) {
          await queue.put(id * perProducer + i);
          check();
        }
      };
      const consume = async (own: number[]): Promise<void> => {
        for await (const item of queue) {
          takeOrder.push(item);
          own.push(item);
          ok(takeOrder.length <= total, "more items taken than put");
          check();
        }
      };
      const check = (): void => {
        ok(queue.size <= queue.capacity);
      };

      const consuming = Array.from({ length: consumers }, () => {
        const own: number[] = [];
        perConsumer.push(own);
        return consume(own);
      });
      await Promise.all(Array.from({ length: producers }, (_, id) => produce(id)));
      queue.close();
      await Promise.all(consuming);

      // No loss and no duplication.
      strictEqual(takeOrder.length, total);
      deepEqual(
        takeOrder.toSorted((a, b) => a - b),
        Array.from({ length: total }, (_, i) => i),
      );
      // FIFO: each producer's items are taken in the order they were put.
      const last = new Array<number>(producers).fill(-1);
      for (const item of takeOrder) {
        const id = Math.floor(item / perProducer);
        ok(item > last[id], `item ${item} of producer ${id} taken after ${last[id]}`);
        last[id] = item;
      }
      // Work is spread over consumers rather than starving them.
      ok(perConsumer.filter((own) => own.length > 0).length > 1);
      strictEqual(queue.size, 0);
      strictEqual(queue.waitingTakers, 0);
      strictEqual(queue.waitingPutters, 0);
    });
  }
});

Deno.test("BlockingQueue close", async (t) => {
  await t.step("rejects every waiting taker", async () => {
    const queue = new BlockingQueue<number>(4);
    const takers = Array.from({ length: 5 }, () => queue.take());
    strictEqual(queue.waitingTakers, 5);
    queue.close();
    strictEqual(queue.closed, true);
    strictEqual(queue.waitingTakers, 0);
    for (const taker of takers) await rejects(taker, QueueClosedError);
  });

  await t.step("rejects waiting putters and drains buffered items", async () => {
    const queue = new BlockingQueue<string>(2);
    await queue.put("a");
    await queue.put("b");
    const putters = [queue.put("x"), queue.put("y")];
    strictEqual(queue.waitingPutters, 2);
    queue.close();
    strictEqual(queue.waitingPutters, 0);
    for (const putter of putters) await rejects(putter, QueueClosedError);
    // The rejected putters' items were never added.
    strictEqual(queue.size, 2);
    strictEqual(await queue.take(), "a");
    strictEqual(queue.tryTake(), "b");
    await rejects(queue.take(), QueueClosedError);
    strictEqual(queue.tryTake(), undefined);
  });

  await t.step("put and tryPut fail after close", async () => {
    const queue = new BlockingQueue<number>(2);
    queue.close();
    await rejects(queue.put(1), QueueClosedError);
    throws(() => queue.tryPut(1), QueueClosedError);
    strictEqual(queue.size, 0);
  });

  await t.step("is idempotent", async () => {
    const queue = new BlockingQueue<number>(2);
    queue.tryPut(1);
    queue.close();
    queue.close();
    strictEqual(queue.closed, true);
    strictEqual(await queue.take(), 1);
    queue.close();
    await rejects(queue.take(), QueueClosedError);
  });
});

Deno.test("BlockingQueue abort", async (t) => {
  await t.step("aborted taker rejects with the reason and gets no items", async () => {
    const queue = new BlockingQueue<number>(2);
    const { controller, listeners } = countingSignal();
    const first = track(queue.take());
    const aborted = track(queue.take({ signal: controller.signal }));
    const third = track(queue.take());
    strictEqual(queue.waitingTakers, 3);
    strictEqual(listeners(), 1);

    const reason = new Error("stop");
    controller.abort(reason);
    strictEqual(queue.waitingTakers, 2);
    strictEqual(listeners(), 0);
    await flush();
    deepEqual(aborted.outcome, { state: "rejected", reason });

    ok(queue.tryPut(1));
    ok(queue.tryPut(2));
    ok(queue.tryPut(3));
    await flush();
    deepEqual(first.outcome, { state: "fulfilled", value: 1 });
    deepEqual(third.outcome, { state: "fulfilled", value: 2 });
    strictEqual(queue.tryTake(), 3);
  });

  await t.step("aborted putter rejects with the reason and its item is dropped", async () => {
    const queue = new BlockingQueue<string>(1);
    await queue.put("a");
    const controller = new AbortController();
    const p1 = track(queue.put("p1"));
    const p2 = track(queue.put("p2", { signal: controller.signal }));
    const p3 = track(queue.put("p3"));
    strictEqual(queue.waitingPutters, 3);
    controller.abort("reason-string");
    strictEqual(queue.waitingPutters, 2);
    await flush();
    deepEqual(p2.outcome, { state: "rejected", reason: "reason-string" });

    const taken = [await queue.take(), await queue.take(), await queue.take()];
    deepEqual(taken, ["a", "p1", "p3"]);
    await flush();
    strictEqual(p1.outcome.state, "fulfilled");
    strictEqual(p3.outcome.state, "fulfilled");
    strictEqual(queue.size, 0);
  });

  await t.step("default abort reason is an AbortError DOMException", async () => {
    const queue = new BlockingQueue<number>(1);
    const controller = new AbortController();
    const pending = queue.take({ signal: controller.signal });
    controller.abort();
    await rejects(pending, (error: unknown) => {
      ok(error instanceof DOMException);
      strictEqual(error.name, "AbortError");
      return true;
    });
  });

  await t.step("abort after settling is a no-op and listeners are removed", async () => {
    const queue = new BlockingQueue<number>(1);
    const taker = countingSignal();
    const pending = queue.take({ signal: taker.controller.signal });
    strictEqual(taker.listeners(), 1);
    ok(queue.tryPut(5));
    strictEqual(taker.listeners(), 0);
    taker.controller.abort(new Error("late"));
    strictEqual(await pending, 5);

    ok(queue.tryPut(6));
    const putter = countingSignal();
    const blocked = queue.put(7, { signal: putter.controller.signal });
    strictEqual(putter.listeners(), 1);
    strictEqual(queue.tryTake(), 6);
    strictEqual(putter.listeners(), 0);
    putter.controller.abort(new Error("late"));
    await blocked;
    strictEqual(queue.tryTake(), 7);

    const closing = countingSignal();
    const rejected = queue.take({ signal: closing.controller.signal });
    strictEqual(closing.listeners(), 1);
    queue.close();
    strictEqual(closing.listeners(), 0);
    await rejects(rejected, QueueClosedError);
  });

  await t.step("one signal shared by several waiters aborts all of them", async () => {
    const queue = new BlockingQueue<number>(1);
    const controller = new AbortController();
    const waits = [
      queue.take({ signal: controller.signal }),
      queue.take({ signal: controller.signal }),
    ];
    const other = queue.take();
    controller.abort(new Error("both"));
    for (const wait of waits) await rejects(wait, { message: "both" });
    strictEqual(queue.waitingTakers, 1);
    ok(queue.tryPut(1));
    strictEqual(await other, 1);
  });

  await t.step("already-aborted signals reject at once and change nothing", async () => {
    const queue = new BlockingQueue<number>(2);
    const reason = new Error("already");
    const signal = AbortSignal.abort(reason);

    // put would have room, but the signal wins.
    await rejects(queue.put(1, { signal }), (error) => error === reason);
    strictEqual(queue.size, 0);
    // take on an empty queue does not start waiting.
    await rejects(queue.take({ signal }), (error) => error === reason);
    strictEqual(queue.waitingTakers, 0);
    // take with items buffered does not consume one.
    ok(queue.tryPut(1));
    await rejects(queue.take({ signal }), (error) => error === reason);
    strictEqual(queue.size, 1);
    // Full queue: put does not start waiting.
    ok(queue.tryPut(2));
    await rejects(queue.put(3, { signal }), (error) => error === reason);
    strictEqual(queue.waitingPutters, 0);
    deepEqual([queue.tryTake(), queue.tryTake()], [1, 2]);
  });
});

Deno.test("BlockingQueue async iteration", async (t) => {
  await t.step("yields buffered and later items, ends on close", async () => {
    const queue = new BlockingQueue<number>(2);
    const producer = (async () => {
      for (let i = 0; i < 10; i++) await queue.put(i);
      queue.close();
    })();
    const received = await collect(queue, 10);
    await producer;
    deepEqual(received, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  await t.step("a waiting iterator ends when the queue is closed", async () => {
    const queue = new BlockingQueue<number>(2);
    const collecting = collect(queue, 0);
    await flush();
    strictEqual(queue.waitingTakers, 1);
    queue.close();
    deepEqual(await collecting, []);
  });

  await t.step("drains remaining items after close", async () => {
    const queue = new BlockingQueue<string>(3);
    queue.tryPut("x");
    queue.tryPut("y");
    queue.close();
    deepEqual(await collect(queue, 2), ["x", "y"]);
    deepEqual(await collect(queue, 0), []);
  });

  await t.step("overlapping next() calls are served in call order", async () => {
    const queue = new BlockingQueue<number>(1);
    const iterator = queue[Symbol.asyncIterator]();
    const first = iterator.next();
    const second = iterator.next();
    strictEqual(queue.waitingTakers, 2);
    ok(queue.tryPut(1));
    ok(queue.tryPut(2));
    deepEqual(await first, { value: 1, done: false });
    deepEqual(await second, { value: 2, done: false });
    const third = iterator.next();
    queue.close();
    deepEqual(await third, { value: undefined, done: true });
    deepEqual(await iterator.next(), { value: undefined, done: true });
  });

  await t.step("breaking out leaves remaining items in the queue", async () => {
    const queue = new BlockingQueue<number>(4);
    for (let i = 0; i < 4; i++) queue.tryPut(i);
    let seen = 0;
    for await (const item of queue) {
      ok(++seen <= 2, "iteration did not stop at break");
      if (item === 1) break;
    }
    strictEqual(queue.size, 2);
    strictEqual(queue.tryTake(), 2);
  });
});

type SyncOp =
  | { kind: "tryPut"; item: number }
  | { kind: "tryTake" }
  | { kind: "close" };

const syncOp: fc.Arbitrary<SyncOp> = fc.oneof(
  { weight: 10, arbitrary: fc.integer().map((item) => ({ kind: "tryPut" as const, item })) },
  { weight: 8, arbitrary: fc.constant({ kind: "tryTake" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "close" as const }) },
);

Deno.test("BlockingQueue property: tryPut/tryTake/close match an array model", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.array(syncOp, { maxLength: 200 }),
      (capacity, ops) => {
        const queue = new BlockingQueue<number>(capacity);
        const model: number[] = [];
        let closed = false;
        for (const op of ops) {
          switch (op.kind) {
            case "tryPut": {
              if (closed) {
                throws(() => queue.tryPut(op.item), QueueClosedError);
              } else {
                const accepted = model.length < capacity;
                if (accepted) model.push(op.item);
                strictEqual(queue.tryPut(op.item), accepted);
              }
              break;
            }
            case "tryTake":
              strictEqual(queue.tryTake(), model.shift());
              break;
            case "close":
              queue.close();
              closed = true;
              break;
          }
          strictEqual(queue.size, model.length);
          ok(queue.size <= queue.capacity);
          strictEqual(queue.closed, closed);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

type AsyncOp =
  | { kind: "put"; item: number; abortable: boolean }
  | { kind: "take"; abortable: boolean }
  | { kind: "tryPut"; item: number }
  | { kind: "tryTake" }
  | { kind: "abort"; pick: number }
  | { kind: "close" };

const asyncOp: fc.Arbitrary<AsyncOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("put" as const),
      item: fc.integer({ min: 0, max: 999 }),
      abortable: fc.boolean(),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant("take" as const), abortable: fc.boolean() }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("tryPut" as const),
      item: fc.integer({ min: 0, max: 999 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: "tryTake" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "close" as const }) },
);

type Expected =
  | { state: "pending" }
  | { state: "fulfilled"; value: number | undefined }
  | { state: "rejected"; reason: "closed" | "aborted" };

Deno.test("BlockingQueue property: blocking operations match a waiter model", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }),
      fc.array(asyncOp, { maxLength: 60 }),
      async (capacity, ops) => {
        const queue = new BlockingQueue<number>(capacity);
        // Model state.
        const buffer: number[] = [];
        const putters: { id: number; item: number }[] = [];
        const takers: number[] = [];
        let closed = false;
        // Every blocking call, its observed outcome and its expected outcome.
        const calls: {
          tracked: { readonly outcome: Outcome<unknown> };
          expected: Expected;
          controller: AbortController | undefined;
        }[] = [];
        const abortReason = new Error("aborted");

        const call = (promise: Promise<unknown>, controller?: AbortController): number => {
          calls.push({ tracked: track(promise), expected: { state: "pending" }, controller });
          return calls.length - 1;
        };
        const settle = (id: number, expected: Expected): void => {
          calls[id].expected = expected;
        };
        /** Model of taking the buffer head, refilled by the first putter. */
        const modelDequeue = (): number => {
          const item = buffer.shift() as number;
          const putter = putters.shift();
          if (putter !== undefined) {
            buffer.push(putter.item);
            settle(putter.id, { state: "fulfilled", value: undefined });
          }
          return item;
        };
        /** Model of offering an item; false when full. */
        const modelOffer = (item: number): boolean => {
          const taker = takers.shift();
          if (taker !== undefined) {
            settle(taker, { state: "fulfilled", value: item });
            return true;
          }
          if (buffer.length === capacity) return false;
          buffer.push(item);
          return true;
        };

        for (const op of ops) {
          switch (op.kind) {
            case "put": {
              const controller = op.abortable ? new AbortController() : undefined;
              const id = call(queue.put(op.item, { signal: controller?.signal }), controller);
              if (closed) settle(id, { state: "rejected", reason: "closed" });
              else if (modelOffer(op.item)) settle(id, { state: "fulfilled", value: undefined });
              else putters.push({ id, item: op.item });
              break;
            }
            case "take": {
              const controller = op.abortable ? new AbortController() : undefined;
              const id = call(queue.take({ signal: controller?.signal }), controller);
              if (buffer.length > 0) settle(id, { state: "fulfilled", value: modelDequeue() });
              else if (closed) settle(id, { state: "rejected", reason: "closed" });
              else takers.push(id);
              break;
            }
            case "tryPut":
              if (closed) throws(() => queue.tryPut(op.item), QueueClosedError);
              else strictEqual(queue.tryPut(op.item), modelOffer(op.item));
              break;
            case "tryTake":
              strictEqual(
                queue.tryTake(),
                buffer.length > 0 ? modelDequeue() : undefined,
              );
              break;
            case "abort": {
              const abortable = calls
                .map((c, id) => ({ c, id }))
                .filter(({ c }) => c.controller !== undefined && !c.controller.signal.aborted);
              if (abortable.length === 0) break;
              const { c, id } = abortable[op.pick % abortable.length];
              (c.controller as AbortController).abort(abortReason);
              const takerAt = takers.indexOf(id);
              const putterAt = putters.findIndex((p) => p.id === id);
              if (takerAt >= 0) {
                takers.splice(takerAt, 1);
                settle(id, { state: "rejected", reason: "aborted" });
              } else if (putterAt >= 0) {
                putters.splice(putterAt, 1);
                settle(id, { state: "rejected", reason: "aborted" });
              }
              break;
            }
            case "close":
              queue.close();
              if (!closed) {
                closed = true;
                for (const id of takers) settle(id, { state: "rejected", reason: "closed" });
                for (const { id } of putters) settle(id, { state: "rejected", reason: "closed" });
                takers.length = 0;
                putters.length = 0;
              }
              break;
          }
          strictEqual(queue.size, buffer.length);
          strictEqual(queue.waitingTakers, takers.length);
          strictEqual(queue.waitingPutters, putters.length);
          strictEqual(queue.closed, closed);
        }

        await flush();
        const describe = (outcome: Outcome<unknown>): Expected => {
          if (outcome.state !== "rejected") return outcome as Expected;
          if (outcome.reason instanceof QueueClosedError) {
            return { state: "rejected", reason: "closed" };
          }
          strictEqual(outcome.reason, abortReason);
          return { state: "rejected", reason: "aborted" };
        };
        deepEqual(
          calls.map((c) => describe(c.tracked.outcome)),
          calls.map((c) => c.expected),
        );

        // Closing settles whatever is still waiting, so nothing is left hanging.
        queue.close();
        await flush();
        ok(calls.every((c) => c.tracked.outcome.state !== "pending"));
      },
    ),
    { numRuns: 1000 },
  );
});
